// SPDX-License-Identifier: GPL-2.0
/* chain_e: appends 'e' (see chain_body.h). */
#define CHAIN_LETTER 'e'
#define L45C_ID 115
#include "chain_body.h"
