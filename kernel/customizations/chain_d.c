// SPDX-License-Identifier: GPL-2.0
/* chain_d: appends 'd' (see chain_body.h). */
#define CHAIN_LETTER 'd'
#define L45C_ID 114
#include "chain_body.h"
