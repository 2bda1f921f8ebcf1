// SPDX-License-Identifier: GPL-2.0
/* try_next: declines every message (R8), counting how often it was asked. */
#define L45C_ID 106
#include "l45cust.h"

L45C_COUNTER(calls);

static void try_next_fn(struct customization_buffer *cb,
			struct customization_flow *flow)
{
	atomic_inc(&calls);
	cb->try_next = true;
}

L45C_MODULE(try_next_fn, try_next_fn, NULL, "Layer 4.5 test: decline");
