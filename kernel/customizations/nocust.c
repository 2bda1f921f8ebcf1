// SPDX-License-Identifier: GPL-2.0
/* nocust: sets no_cust on every message and counts how often it was asked. */
#define L45C_ID 104
#include "l45cust.h"

static atomic_t calls = ATOMIC_INIT(0);
static int get_calls(char *buf, const struct kernel_param *kp)
{
	return sprintf(buf, "%d\n", atomic_read(&calls));
}
static const struct kernel_param_ops calls_ops = { .get = get_calls };
module_param_cb(calls, &calls_ops, NULL, 0444);
MODULE_PARM_DESC(calls, "how many messages were offered");

static void nocust_fn(struct customization_buffer *cb,
		      struct customization_flow *flow)
{
	atomic_inc(&calls);
	cb->no_cust = true;
}

L45C_MODULE(nocust_fn, nocust_fn, NULL, "Layer 4.5 test: never customize");
