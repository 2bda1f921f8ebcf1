/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One body for the chain_a .. chain_f modules: each appends its own letter
 * to messages it sends (and, with on_recv=1, to messages received), so the
 * order in which modules ran is visible on the wire (R14).  A tiny
 * chain_X.c defines CHAIN_LETTER and the default id and includes this.
 */
#ifndef CHAIN_LETTER
#error "define CHAIN_LETTER"
#endif
#define L45C_ON_RECV 0
#include "l45cust.h"

static const char chain_letter[1] = { CHAIN_LETTER };

static void chain_send(struct customization_buffer *cb,
		       struct customization_flow *flow)
{
	if (!on_send) {
		cb->no_cust = true;
		return;
	}
	l45c_append(cb, cb->length, chain_letter, 1);
}

static void chain_recv(struct customization_buffer *cb,
		       struct customization_flow *flow)
{
	if (!on_recv) {
		cb->no_cust = true;
		return;
	}
	l45c_append(cb, cb->recv_return, chain_letter, 1);
}

L45C_MODULE(chain_send, chain_recv, NULL,
	    "Layer 4.5 test: append a letter (ordering marker)");
