// SPDX-License-Identifier: GPL-2.0
/*
 * peek: reads the whole message through src_iter (send: length bytes,
 * recv: recv_return bytes) and leaves the iterator exhausted, then
 * declines: try_next, or no_cust with nocust=1.  R9: whatever a module
 * does to src_iter, Layer 4.5 restores it before acting on the verdict, so
 * the next module (try_next) or the transport/application (no_cust) still
 * gets the whole message.  "calls" counts offers, "bytes" what was read.
 */
#define L45C_ID 123
#include "l45cust.h"

static bool peek_nocust;
module_param_named(nocust, peek_nocust, bool, 0644);
MODULE_PARM_DESC(nocust, "decline with no_cust instead of try_next");

L45C_COUNTER(calls);
L45C_COUNTER(bytes);

static void peek_read(struct customization_buffer *cb, size_t n)
{
	u8 tmp[16];
	size_t off = 0, k;

	atomic_inc(&calls);
	while (off < n) {
		k = min(sizeof(tmp), n - off);
		if (!copy_from_iter_full(tmp, k, cb->src_iter))
			break;
		off += k;
	}
	atomic_add(off, &bytes);
	if (peek_nocust)
		cb->no_cust = true;
	else
		cb->try_next = true;
}

static void peek_send(struct customization_buffer *cb,
		      struct customization_flow *flow)
{
	peek_read(cb, cb->length);
}

static void peek_recv(struct customization_buffer *cb,
		      struct customization_flow *flow)
{
	peek_read(cb, cb->recv_return);
}

L45C_MODULE(peek_send, peek_recv, NULL,
	    "Layer 4.5 test: exhaust src_iter, then decline");
