// SPDX-License-Identifier: GPL-2.0
/* chain_f: appends 'f' (see chain_body.h). */
#define CHAIN_LETTER 'f'
#define L45C_ID 116
#include "chain_body.h"
