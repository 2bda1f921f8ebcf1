// SPDX-License-Identifier: GPL-2.0
/*
 * skip_after: tags the first "count" messages (send: append tag, recv:
 * strip it), counting both directions together; on the next message it
 * sets set_cust_to_skip (R7), after which Layer 4.5 must never call any
 * module for that socket again.  The counter is per module, not per socket:
 * tests use one socket at a time.
 */
#define L45C_ID 105
#include "l45cust.h"

static int count = 2;
module_param(count, int, 0444);
MODULE_PARM_DESC(count, "messages customized before set_cust_to_skip");
static char *tag = "SKP";
module_param(tag, charp, 0444);

L45C_COUNTER(seen);

static bool skip_now(struct customization_buffer *cb)
{
	if (atomic_inc_return(&seen) > count) {
		cb->set_cust_to_skip = true;
		return true;
	}
	return false;
}

static void skip_send(struct customization_buffer *cb,
		      struct customization_flow *flow)
{
	if (!skip_now(cb))
		l45c_append(cb, cb->length, tag, strlen(tag));
}

static void skip_recv(struct customization_buffer *cb,
		      struct customization_flow *flow)
{
	if (!skip_now(cb))
		l45c_strip(cb, cb->recv_return, tag, strlen(tag));
}

L45C_MODULE(skip_send, skip_recv, NULL,
	    "Layer 4.5 test: set_cust_to_skip after N messages");
