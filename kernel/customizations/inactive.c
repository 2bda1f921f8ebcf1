// SPDX-License-Identifier: GPL-2.0
/*
 * inactive: registered with activate=0 by default, so Layer 4.5 attaches
 * it but never calls it (R11).  Once activated (TOGGLE or activate=1) it
 * appends a marker on send and strips it on recv.
 */
#define L45C_ID 107
#define L45C_ACTIVE 0
#include "l45cust.h"

static char *tag = "ACTIVE";
module_param(tag, charp, 0444);

static void inactive_send(struct customization_buffer *cb,
			  struct customization_flow *flow)
{
	if (!on_send) {
		cb->no_cust = true;
		return;
	}
	l45c_append(cb, cb->length, tag, strlen(tag));
}

static void inactive_recv(struct customization_buffer *cb,
			  struct customization_flow *flow)
{
	if (!on_recv) {
		cb->no_cust = true;
		return;
	}
	l45c_strip(cb, cb->recv_return, tag, strlen(tag));
}

L45C_MODULE(inactive_send, inactive_recv, NULL,
	    "Layer 4.5 test: inactive unless toggled on");
