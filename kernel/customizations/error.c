// SPDX-License-Identifier: GPL-2.0
/*
 * error: fail the send and/or recv with the errno given as parameter
 * (R4).  errno=111 and errno=-111 both mean -ECONNREFUSED; a value out of
 * the errno range (e.g. 5000) must come out as EIO.
 */
#define L45C_ID 103
#include "l45cust.h"

static int l45c_errno = 111;	/* ECONNREFUSED */
module_param_named(errno, l45c_errno, int, 0644);
MODULE_PARM_DESC(errno, "errno to fail with");

static ssize_t error_value(void)
{
	int e = READ_ONCE(l45c_errno);

	return e > 0 ? -(ssize_t)e : (ssize_t)e;
}

static void error_send(struct customization_buffer *cb,
		       struct customization_flow *flow)
{
	if (!on_send)
		cb->no_cust = true;
	else
		cb->copy_length = error_value();
}

static void error_recv(struct customization_buffer *cb,
		       struct customization_flow *flow)
{
	if (!on_recv)
		cb->no_cust = true;
	else
		cb->copy_length = error_value();
}

L45C_MODULE(error_send, error_recv, NULL, "Layer 4.5 test: fail with an errno");
