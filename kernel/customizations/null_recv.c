// SPDX-License-Identifier: GPL-2.0
/*
 * null_recv: negative test of R1.  Registers a send function and no recv
 * function; Layer 4.5 must refuse it (-EINVAL), so insmod fails.
 */
#define L45C_ID 130
#include "l45cust.h"

static void null_recv_send(struct customization_buffer *cb,
			   struct customization_flow *flow)
{
	cb->no_cust = true;
}

L45C_MODULE(null_recv_send, NULL, NULL,
	    "Layer 4.5 negative test: NULL recv function");
