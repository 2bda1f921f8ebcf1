// SPDX-License-Identifier: GPL-2.0
/*
 * dup_id: negative test of R1.  Its default id is tag's (101): loaded
 * after tag it must be refused with -EEXIST.
 */
#define L45C_ID 101
#include "l45cust.h"

static void dup_fn(struct customization_buffer *cb,
		   struct customization_flow *flow)
{
	cb->no_cust = true;
}

L45C_MODULE(dup_fn, dup_fn, NULL, "Layer 4.5 negative test: duplicate id");
