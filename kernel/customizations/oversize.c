// SPDX-License-Identifier: GPL-2.0
/*
 * oversize: a buggy module (R5) claiming copy_length = buf_size + 1.  Layer
 * 4.5 must fail the call with EMSGSIZE, log the module's id, and deliver
 * nothing corrupted.
 */
#define L45C_ID 132
#include "l45cust.h"

static void oversize_send(struct customization_buffer *cb,
			  struct customization_flow *flow)
{
	if (!on_send)
		cb->no_cust = true;
	else
		cb->copy_length = (ssize_t)cb->buf_size + 1;
}

static void oversize_recv(struct customization_buffer *cb,
			  struct customization_flow *flow)
{
	if (!on_recv)
		cb->no_cust = true;
	else
		cb->copy_length = (ssize_t)cb->buf_size + 1;
}

L45C_MODULE(oversize_send, oversize_recv, NULL,
	    "Layer 4.5 negative test: copy_length beyond buf_size");
