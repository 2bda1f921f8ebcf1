// SPDX-License-Identifier: GPL-2.0
/* chain_b: appends 'b' (see chain_body.h). */
#define CHAIN_LETTER 'b'
#define L45C_ID 112
#include "chain_body.h"
