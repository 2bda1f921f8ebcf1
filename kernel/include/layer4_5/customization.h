/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layer 4.5 module interface.
 *
 * This is the only header a customization module needs.  The layout of the
 * three structures is a binary interface shared with customization modules
 * that were written against the established Layer 4.5; it is checked below
 * at build time for x86-64 and must never change.
 *
 * Out-of-tree customization modules add to their Kbuild:
 *	ccflags-y += -I<path to kernel/>/include
 * and build with KBUILD_EXTRA_SYMBOLS pointing at Layer 4.5's Module.symvers.
 */
#ifndef _LAYER4_5_CUSTOMIZATION_H
#define _LAYER4_5_CUSTOMIZATION_H

#include <linux/types.h>
#include <linux/list.h>
#include <linux/time64.h>
#include <linux/stddef.h>
#include <linux/build_bug.h>

struct iov_iter;

/* Wildcards in a module's target flow. */
#define CUSTOMIZATION_PROTO_ANY		256
#define CUSTOMIZATION_TASK_ANY		"*"
#define CUSTOMIZATION_TASK_NAME_LEN	16

/*
 * What a module targets, and what a socket is.  Ports in host byte order,
 * addresses in network byte order.  source_* is the local side of the
 * socket, dest_* the remote side.
 */
struct customization_flow {
	u16 dest_port;
	u16 source_port;
	__be32 dest_ip;
	__be32 source_ip;
	u16 protocol;
	char task_name_pid[CUSTOMIZATION_TASK_NAME_LEN];
	char task_name_tgid[CUSTOMIZATION_TASK_NAME_LEN];
};

/*
 * Handed to a module's send/recv function.  Layer 4.5 owns it and resets
 * the verdict fields (copy_length, set_cust_to_skip, no_cust, try_next)
 * before every callback.
 *
 * copy_length is signed: > 0 replace the message with buf[0, copy_length),
 * 0 drop it, < 0 fail the call with that errno (-4095..-1, else -EIO).
 */
struct customization_buffer {
	void *buf;
	u32 buf_size;
	ssize_t copy_length;
	struct iov_iter *src_iter;
	size_t length;
	size_t recv_return;
	bool set_cust_to_skip;
	bool no_cust;
	bool try_next;
};

typedef void (*customization_fn)(struct customization_buffer *cb,
				 struct customization_flow *flow);
typedef void (*customization_challenge_fn)(char *response, char *iv,
					   char *challenge);

/* A module's registration. */
struct customization_node {
	struct customization_flow target_flow;
	u16 cust_id;
	u16 *active_mode;
	u16 sock_count;
	u16 *cust_priority;
	u32 send_buffer_size;
	u32 recv_buffer_size;
	struct timespec64 registration_time_struct;
	struct timespec64 deprecated_time_struct;
	struct timespec64 revoked_time_struct;
	customization_fn send_function;
	customization_fn recv_function;
	customization_challenge_fn challenge_function;
	struct list_head cust_list_member;
	struct list_head deprecated_cust_list_member;
	struct list_head revoked_cust_list_member;
};

int register_customization(struct customization_node *node, u16 apply_now);
int unregister_customization(struct customization_node *node);

/* The established binary layout (x86-64). */
#ifdef CONFIG_X86_64
#define _L45_ABI(type, field, off) \
	static_assert(offsetof(struct type, field) == (off), \
		      #type "." #field " moved: Layer 4.5 ABI broken")

static_assert(sizeof(struct customization_flow) == 48,
	      "customization_flow size: Layer 4.5 ABI broken");
_L45_ABI(customization_flow, dest_port, 0);
_L45_ABI(customization_flow, source_port, 2);
_L45_ABI(customization_flow, dest_ip, 4);
_L45_ABI(customization_flow, source_ip, 8);
_L45_ABI(customization_flow, protocol, 12);
_L45_ABI(customization_flow, task_name_pid, 14);
_L45_ABI(customization_flow, task_name_tgid, 30);

static_assert(sizeof(struct customization_buffer) == 56,
	      "customization_buffer size: Layer 4.5 ABI broken");
_L45_ABI(customization_buffer, buf, 0);
_L45_ABI(customization_buffer, buf_size, 8);
_L45_ABI(customization_buffer, copy_length, 16);
_L45_ABI(customization_buffer, src_iter, 24);
_L45_ABI(customization_buffer, length, 32);
_L45_ABI(customization_buffer, recv_return, 40);
_L45_ABI(customization_buffer, set_cust_to_skip, 48);
_L45_ABI(customization_buffer, no_cust, 49);
_L45_ABI(customization_buffer, try_next, 50);
static_assert(sizeof(ssize_t) == sizeof(size_t),
	      "copy_length must keep the size of the historic size_t");

static_assert(sizeof(struct customization_node) == 208,
	      "customization_node size: Layer 4.5 ABI broken");
_L45_ABI(customization_node, target_flow, 0);
_L45_ABI(customization_node, cust_id, 48);
_L45_ABI(customization_node, active_mode, 56);
_L45_ABI(customization_node, sock_count, 64);
_L45_ABI(customization_node, cust_priority, 72);
_L45_ABI(customization_node, send_buffer_size, 80);
_L45_ABI(customization_node, recv_buffer_size, 84);
_L45_ABI(customization_node, registration_time_struct, 88);
_L45_ABI(customization_node, deprecated_time_struct, 104);
_L45_ABI(customization_node, revoked_time_struct, 120);
_L45_ABI(customization_node, send_function, 136);
_L45_ABI(customization_node, recv_function, 144);
_L45_ABI(customization_node, challenge_function, 152);
_L45_ABI(customization_node, cust_list_member, 160);
_L45_ABI(customization_node, deprecated_cust_list_member, 176);
_L45_ABI(customization_node, revoked_cust_list_member, 192);
#undef _L45_ABI
#endif /* CONFIG_X86_64 */

#endif /* _LAYER4_5_CUSTOMIZATION_H */
