// SPDX-License-Identifier: GPL-2.0
/* nocust: sets no_cust on every message and counts how often it was asked. */
#define L45C_ID 104
#include "l45cust.h"

L45C_COUNTER(calls);
MODULE_PARM_DESC(calls, "how many messages were offered");

static void nocust_fn(struct customization_buffer *cb,
		      struct customization_flow *flow)
{
	atomic_inc(&calls);
	cb->no_cust = true;
}

L45C_MODULE(nocust_fn, nocust_fn, NULL, "Layer 4.5 test: never customize");
