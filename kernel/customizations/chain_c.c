// SPDX-License-Identifier: GPL-2.0
/* chain_c: appends 'c' (see chain_body.h). */
#define CHAIN_LETTER 'c'
#define L45C_ID 113
#include "chain_body.h"
