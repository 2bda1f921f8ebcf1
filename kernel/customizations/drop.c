// SPDX-License-Identifier: GPL-2.0
/* drop: copy_length = 0 on send and/or recv (R3). */
#define L45C_ID 102
#include "l45cust.h"

static void drop_send(struct customization_buffer *cb,
		      struct customization_flow *flow)
{
	if (!on_send)
		cb->no_cust = true;
	else
		cb->copy_length = 0;
}

static void drop_recv(struct customization_buffer *cb,
		      struct customization_flow *flow)
{
	if (!on_recv)
		cb->no_cust = true;
	else
		cb->copy_length = 0;
}

L45C_MODULE(drop_send, drop_recv, NULL, "Layer 4.5 test: drop messages");
