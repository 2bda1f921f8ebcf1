// SPDX-License-Identifier: GPL-2.0
/* tag: the basic "Layer 4.5 touched this" marker (see tag_body.h). */
#define L45C_ID 101
#include "tag_body.h"
