// SPDX-License-Identifier: GPL-2.0
/* try_next: declines every message (R8), counting how often it was asked. */
#define L45C_ID 106
#include "l45cust.h"

static atomic_t calls = ATOMIC_INIT(0);
static int get_calls(char *buf, const struct kernel_param *kp)
{
	return sprintf(buf, "%d\n", atomic_read(&calls));
}
static const struct kernel_param_ops calls_ops = { .get = get_calls };
module_param_cb(calls, &calls_ops, NULL, 0444);

static void try_next_fn(struct customization_buffer *cb,
			struct customization_flow *flow)
{
	atomic_inc(&calls);
	cb->try_next = true;
}

L45C_MODULE(try_next_fn, try_next_fn, NULL, "Layer 4.5 test: decline");
