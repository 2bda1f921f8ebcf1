/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One body for tag and tag2: append a tag to every message sent, strip it
 * from the end of every message received (if present).  Two instances so
 * a test can tag a client and its server with separate targets.
 */
#include "l45cust.h"

static char *tag = "L45";
module_param(tag, charp, 0444);
MODULE_PARM_DESC(tag, "string appended on send, stripped on recv");

static void tag_send(struct customization_buffer *cb,
		     struct customization_flow *flow)
{
	if (!on_send) {
		cb->no_cust = true;
		return;
	}
	l45c_append(cb, cb->length, tag, strlen(tag));
}

static void tag_recv(struct customization_buffer *cb,
		     struct customization_flow *flow)
{
	if (!on_recv) {
		cb->no_cust = true;
		return;
	}
	l45c_strip(cb, cb->recv_return, tag, strlen(tag));
}

L45C_MODULE(tag_send, tag_recv, NULL, "Layer 4.5 test: append/strip a tag");
