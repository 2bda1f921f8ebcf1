// SPDX-License-Identifier: GPL-2.0
/* tag2: a second, independent tag instance (see tag_body.h). */
#define L45C_ID 108
#include "tag_body.h"
