/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One body for the chain_a .. chain_f modules.  Modules of a socket are
 * alternatives (R8): the first one that does not decline decides the
 * message.  A chain module appends its own letter to messages it sends
 * (and, with on_recv=1, to messages received), or with decline=1 declines
 * them (try_next).  Either way it counts the offer (send_calls,
 * recv_calls) and stamps it with ktime_get_ns() (send_ns, recv_ns), so a
 * test sees which modules a message was offered to and in which order
 * (R8, R13, R14), and the wire shows which one decided it.  A tiny
 * chain_X.c defines CHAIN_LETTER and the default id and includes this.
 */
#ifndef CHAIN_LETTER
#error "define CHAIN_LETTER"
#endif
#define L45C_ON_RECV 0
#include "l45cust.h"
#include <linux/ktime.h>

static const char chain_letter[1] = { CHAIN_LETTER };

static bool decline;
module_param(decline, bool, 0644);
MODULE_PARM_DESC(decline, "decline (try_next) instead of appending");
L45C_COUNTER(send_calls);
L45C_COUNTER(recv_calls);
L45C_STAMP(send_ns);
L45C_STAMP(recv_ns);

static void chain_run(struct customization_buffer *cb, bool on, size_t n,
		      atomic_t *calls, atomic64_t *stamp)
{
	atomic_inc(calls);
	atomic64_set(stamp, ktime_get_ns());
	if (READ_ONCE(decline))
		cb->try_next = true;
	else if (!on)
		cb->no_cust = true;
	else
		l45c_append(cb, n, chain_letter, 1);
}

static void chain_send(struct customization_buffer *cb,
		       struct customization_flow *flow)
{
	chain_run(cb, READ_ONCE(on_send), cb->length, &send_calls, &send_ns);
}

static void chain_recv(struct customization_buffer *cb,
		       struct customization_flow *flow)
{
	chain_run(cb, READ_ONCE(on_recv), cb->recv_return, &recv_calls,
		  &recv_ns);
}

L45C_MODULE(chain_send, chain_recv, NULL,
	    "Layer 4.5 test: append a letter or decline, counting offers");
