/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared plumbing of the test customization modules: the module parameters
 * every one of them takes and the registration boilerplate.  Each module
 * includes this once and then only writes its send/recv functions.
 *
 * Parameters (all optional):
 *	task_pid, task_tgid	thread / process name to match ("*" = any)
 *	protocol		6, 17 or 256 (any)
 *	dest_ip, source_ip	dotted quad, "0.0.0.0" = any
 *	dest_port, source_port	0 = any
 *	id, priority, activate, apply_now
 *	send_buffer_size, recv_buffer_size	0 = Layer 4.5's default
 *	on_send, on_recv	act on that direction (else no_cust)
 */
#ifndef _L45CUST_H
#define _L45CUST_H

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/kernel.h>
#include <linux/string.h>
#include <linux/inet.h>
#include <linux/uio.h>
#include <layer4_5/customization.h>

#ifndef L45C_ID
#error "define L45C_ID (default id) before including l45cust.h"
#endif
#ifndef L45C_ACTIVE
#define L45C_ACTIVE 1
#endif
#ifndef L45C_PRIORITY
#define L45C_PRIORITY 100
#endif
#ifndef L45C_ON_SEND
#define L45C_ON_SEND 1
#endif
#ifndef L45C_ON_RECV
#define L45C_ON_RECV 1
#endif

/* Named parameters: task_pid()/task_tgid() are kernel functions. */
static char *l45c_task_pid = "*";
module_param_named(task_pid, l45c_task_pid, charp, 0444);
MODULE_PARM_DESC(task_pid, "thread name (comm) to match, * = any");
static char *l45c_task_tgid = "*";
module_param_named(task_tgid, l45c_task_tgid, charp, 0444);
MODULE_PARM_DESC(task_tgid, "process name to match, * = any");
static ushort protocol = CUSTOMIZATION_PROTO_ANY;
module_param(protocol, ushort, 0444);
MODULE_PARM_DESC(protocol, "6 (TCP), 17 (UDP) or 256 (any)");
static char *dest_ip = "0.0.0.0";
module_param(dest_ip, charp, 0444);
static char *source_ip = "0.0.0.0";
module_param(source_ip, charp, 0444);
static ushort dest_port;
module_param(dest_port, ushort, 0444);
static ushort source_port;
module_param(source_port, ushort, 0444);
static ushort id = L45C_ID;
module_param(id, ushort, 0444);
MODULE_PARM_DESC(id, "customization id (unique)");
/* priority and activate are read by Layer 4.5 through pointers. */
static u16 priority = L45C_PRIORITY;
module_param(priority, ushort, 0644);
MODULE_PARM_DESC(priority, "lower runs first");
static u16 activate = L45C_ACTIVE;
module_param(activate, ushort, 0644);
MODULE_PARM_DESC(activate, "0 = attached but not called");
static ushort apply_now;
module_param(apply_now, ushort, 0444);
MODULE_PARM_DESC(apply_now, "offer to existing sockets too");
static uint send_buffer_size;
module_param(send_buffer_size, uint, 0444);
static uint recv_buffer_size;
module_param(recv_buffer_size, uint, 0444);
static bool on_send = L45C_ON_SEND;
module_param(on_send, bool, 0644);
static bool on_recv = L45C_ON_RECV;
module_param(on_recv, bool, 0644);

static struct customization_node l45c_node;

/* Read-only parameters that let a test see what a module was offered. */
static int __maybe_unused l45c_get_atomic(char *buf, const struct kernel_param *kp)
{
	return sprintf(buf, "%d\n", atomic_read(kp->arg));
}
static const struct kernel_param_ops __maybe_unused l45c_counter_ops = {
	.get = l45c_get_atomic,
};
static int __maybe_unused l45c_get_atomic64(char *buf, const struct kernel_param *kp)
{
	return sprintf(buf, "%lld\n", (long long)atomic64_read(kp->arg));
}
static const struct kernel_param_ops __maybe_unused l45c_stamp_ops = {
	.get = l45c_get_atomic64,
};

/* An atomic_t counter exposed as the read-only parameter NAME. */
#define L45C_COUNTER(name)						\
	static atomic_t name = ATOMIC_INIT(0);				\
	module_param_cb(name, &l45c_counter_ops, &name, 0444)

/* An atomic64_t (a ktime_get_ns() stamp) exposed as parameter NAME. */
#define L45C_STAMP(name)						\
	static atomic64_t name = ATOMIC64_INIT(0);			\
	module_param_cb(name, &l45c_stamp_ops, &name, 0444)

static int l45c_parse_ip(const char *s, __be32 *out)
{
	u8 a[4];

	if (!s || !*s) {
		*out = 0;
		return 0;
	}
	if (!in4_pton(s, -1, a, -1, NULL))
		return -EINVAL;
	memcpy(out, a, sizeof(a));
	return 0;
}

static int l45c_register(customization_fn send, customization_fn recv,
			 customization_challenge_fn challenge)
{
	struct customization_flow *f = &l45c_node.target_flow;

	if (l45c_parse_ip(dest_ip, &f->dest_ip) ||
	    l45c_parse_ip(source_ip, &f->source_ip)) {
		pr_err("%s: dest_ip/source_ip must be dotted quads\n",
		       KBUILD_MODNAME);
		return -EINVAL;
	}
	f->dest_port = dest_port;
	f->source_port = source_port;
	f->protocol = protocol;
	strscpy(f->task_name_pid, l45c_task_pid ? l45c_task_pid : "*",
		sizeof(f->task_name_pid));
	strscpy(f->task_name_tgid, l45c_task_tgid ? l45c_task_tgid : "*",
		sizeof(f->task_name_tgid));
	l45c_node.cust_id = id;
	l45c_node.active_mode = &activate;
	l45c_node.cust_priority = &priority;
	l45c_node.send_buffer_size = send_buffer_size;
	l45c_node.recv_buffer_size = recv_buffer_size;
	l45c_node.send_function = send;
	l45c_node.recv_function = recv;
	l45c_node.challenge_function = challenge;
	return register_customization(&l45c_node, apply_now);
}

/* Define the module's init/exit around its functions. */
#define L45C_MODULE(send, recv, challenge, desc)			\
static int __init l45c_init(void)					\
{									\
	return l45c_register(send, recv, challenge);			\
}									\
static void __exit l45c_exit(void)					\
{									\
	unregister_customization(&l45c_node);				\
}									\
module_init(l45c_init);							\
module_exit(l45c_exit);							\
MODULE_LICENSE("GPL");							\
MODULE_DESCRIPTION(desc)

/*
 * Read the whole current message into buf (which must hold it).  Send:
 * length bytes; recv: recv_return bytes.  Returns the byte count, or a
 * negative errno for the verdict.
 */
static inline ssize_t l45c_read_all(struct customization_buffer *cb,
				    size_t n)
{
	if (n > cb->buf_size)
		return -EMSGSIZE;
	if (!copy_from_iter_full(cb->buf, n, cb->src_iter))
		return -EFAULT;
	return n;
}

/* Message + suffix; no_cust if it does not fit. */
static inline void l45c_append(struct customization_buffer *cb, size_t n,
			       const char *suffix, size_t slen)
{
	ssize_t got;

	if (n + slen > cb->buf_size) {
		cb->no_cust = true;
		return;
	}
	got = l45c_read_all(cb, n);
	if (got < 0) {
		cb->copy_length = got;
		return;
	}
	memcpy(cb->buf + got, suffix, slen);
	cb->copy_length = got + slen;
}

/* Message without a trailing suffix; unchanged (no_cust) if absent. */
static inline void l45c_strip(struct customization_buffer *cb, size_t n,
			      const char *suffix, size_t slen)
{
	ssize_t got = l45c_read_all(cb, n);

	if (got < 0) {
		cb->copy_length = got;
		return;
	}
	if (slen && got > slen && !memcmp(cb->buf + got - slen, suffix, slen))
		cb->copy_length = got - slen;
	else
		cb->no_cust = true;
}

#endif /* _L45CUST_H */
