// SPDX-License-Identifier: GPL-2.0
/*
 * big_reply: on recv, deliver the message repeated "times" times, more
 * than the application asked for, to exercise R5: TCP keeps the rest for
 * the next receive, UDP truncates with MSG_TRUNC.  Send is left alone.
 */
#define L45C_ID 120
#define L45C_ON_SEND 0
#include "l45cust.h"

static int times = 3;
module_param(times, int, 0444);
MODULE_PARM_DESC(times, "how many copies of the message to deliver");

static void big_send(struct customization_buffer *cb,
		     struct customization_flow *flow)
{
	cb->no_cust = true;
}

static void big_recv(struct customization_buffer *cb,
		     struct customization_flow *flow)
{
	size_t n = cb->recv_return;
	ssize_t got;
	int i;

	if (!on_recv || times < 1 || n * times > cb->buf_size) {
		cb->no_cust = true;
		return;
	}
	got = l45c_read_all(cb, n);
	if (got < 0) {
		cb->copy_length = got;
		return;
	}
	for (i = 1; i < times; i++)
		memcpy(cb->buf + i * n, cb->buf, n);
	cb->copy_length = n * times;
}

L45C_MODULE(big_send, big_recv, NULL,
	    "Layer 4.5 test: recv output larger than the app buffer");
