// SPDX-License-Identifier: GPL-2.0
/* chain_a: appends 'a' (see chain_body.h). */
#define CHAIN_LETTER 'a'
#define L45C_ID 111
#include "chain_body.h"
