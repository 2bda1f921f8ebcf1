/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One body for tag and tag2: append a tag to every message sent, strip it
 * from the end of every message received (if present).  Two instances so
 * a test can tag a client and its server with separate targets.
 */
#include "l45cust.h"
#include <linux/delay.h>
#include <linux/sched.h>

static char *tag = "L45";
module_param(tag, charp, 0444);
MODULE_PARM_DESC(tag, "string appended on send, stripped on recv");
/*
 * Callbacks may sleep (R15): delay_ms makes every callback sleep that long,
 * so a test can unload the module or close the socket while one runs.
 */
static uint delay_ms;
module_param(delay_ms, uint, 0644);
MODULE_PARM_DESC(delay_ms, "sleep this long in every callback");
/* The process (tgid) sleeping in a callback now, 0 if none: tests wait
 * for it instead of guessing from /proc/PID/wchan, whose format differs
 * between kernels. */
L45C_COUNTER(sleeper);

static void tag_delay(void)
{
	int me = task_tgid_nr(current);

	if (!delay_ms)
		return;
	atomic_set(&sleeper, me);
	msleep(delay_ms);
	atomic_cmpxchg(&sleeper, me, 0);
}

static void tag_send(struct customization_buffer *cb,
		     struct customization_flow *flow)
{
	tag_delay();
	if (!on_send) {
		cb->no_cust = true;
		return;
	}
	l45c_append(cb, cb->length, tag, strlen(tag));
}

static void tag_recv(struct customization_buffer *cb,
		     struct customization_flow *flow)
{
	tag_delay();
	if (!on_recv) {
		cb->no_cust = true;
		return;
	}
	l45c_strip(cb, cb->recv_return, tag, strlen(tag));
}

L45C_MODULE(tag_send, tag_recv, NULL, "Layer 4.5 test: append/strip a tag");
