/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every kernel-version difference Layer 4.5 depends on, in one place.
 * Supported: 5.10 .. 7.x.  Nothing outside this file tests
 * LINUX_VERSION_CODE.
 */
#ifndef _L45_COMPAT_H
#define _L45_COMPAT_H

#include <linux/version.h>
#include <linux/socket.h>
#include <linux/uio.h>
#include <linux/rcupdate.h>
#include <net/sock.h>

/*
 * Iterator direction names: ITER_SOURCE/ITER_DEST arrived in 6.1/6.2; the
 * values are the old WRITE/READ.
 */
#ifdef ITER_SOURCE
#define L45_ITER_SOURCE	ITER_SOURCE
#define L45_ITER_DEST	ITER_DEST
#else
#define L45_ITER_SOURCE	WRITE
#define L45_ITER_DEST	READ
#endif

/*
 * Iterator kinds (ITER_UBUF from 6.0, used for every single-buffer
 * send/recv from 6.4) and the field renames of 6.4 (iov -> __iov, ...) need
 * no code here on purpose: Layer 4.5 never looks at the kind or the fields
 * of an application iterator.  It only copies the whole struct iov_iter
 * (to hand modules a private cursor) and uses copy_*_iter(), which work for
 * every kind.  That is what makes the "ITER_UBUF bypasses customization"
 * regression (contract section 4) impossible: there is no type filter.
 */

/*
 * proto->recvmsg lost its separate "noblock" argument in 5.19, and its
 * "addr_len" argument in a 7.x release (the transport then sets
 * msg->msg_namelen itself).  The exact release of the second change is not
 * pinned down, so Kbuild tests include/net/sock.h for it (defining
 * L45_FEATURES_TESTED, and L45_RECVMSG_NO_ADDR_LEN when addr_len is gone);
 * if the header cannot be read the version fallback assumes 7.0.
 */
#if defined(L45_RECVMSG_NO_ADDR_LEN) || \
	(!defined(L45_FEATURES_TESTED) && \
	 LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0))
#define L45_RECVMSG_PARAMS(sk, msg, len, flags, addr_len) \
	struct sock *sk, struct msghdr *msg, size_t len, int flags
#define L45_RECVMSG_FLAGS(flags)	(flags)
#define L45_RECVMSG_ADDR_LEN(addr_len)	NULL
typedef int (*l45_recvmsg_fn)(struct sock *, struct msghdr *, size_t, int);
static inline int l45_call_recvmsg(l45_recvmsg_fn fn, struct sock *sk,
				   struct msghdr *msg, size_t len, int flags,
				   int *addr_len)
{
	return fn(sk, msg, len, flags);
}
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(5, 19, 0)
#define L45_RECVMSG_PARAMS(sk, msg, len, flags, addr_len) \
	struct sock *sk, struct msghdr *msg, size_t len, int flags, \
	int *addr_len
#define L45_RECVMSG_FLAGS(flags)	(flags)
#define L45_RECVMSG_ADDR_LEN(addr_len)	(addr_len)
typedef int (*l45_recvmsg_fn)(struct sock *, struct msghdr *, size_t, int,
			      int *);
static inline int l45_call_recvmsg(l45_recvmsg_fn fn, struct sock *sk,
				   struct msghdr *msg, size_t len, int flags,
				   int *addr_len)
{
	return fn(sk, msg, len, flags, addr_len);
}
#else
#define L45_RECVMSG_PARAMS(sk, msg, len, flags, addr_len) \
	struct sock *sk, struct msghdr *msg, size_t len, int noblock, \
	int flags, int *addr_len
/* Internally Layer 4.5 always carries MSG_DONTWAIT inside flags. */
#define L45_RECVMSG_FLAGS(flags)	((flags) | (noblock ? MSG_DONTWAIT : 0))
#define L45_RECVMSG_ADDR_LEN(addr_len)	(addr_len)
typedef int (*l45_recvmsg_fn)(struct sock *, struct msghdr *, size_t, int,
			      int, int *);
static inline int l45_call_recvmsg(l45_recvmsg_fn fn, struct sock *sk,
				   struct msghdr *msg, size_t len, int flags,
				   int *addr_len)
{
	return fn(sk, msg, len, flags & MSG_DONTWAIT, flags & ~MSG_DONTWAIT,
		  addr_len);
}
#endif

/* proto->accept takes a struct proto_accept_arg from 6.10. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
#define L45_ACCEPT_PARAMS(sk)	struct sock *sk, struct proto_accept_arg *arg
#define L45_ACCEPT_ARGS(sk)	sk, arg
#define L45_ACCEPT_KERN		(arg->kern)
typedef struct sock *(*l45_accept_fn)(struct sock *,
				      struct proto_accept_arg *);
#else
#define L45_ACCEPT_PARAMS(sk)	struct sock *sk, int flags, int *err, bool kern
#define L45_ACCEPT_ARGS(sk)	sk, flags, err, kern
#define L45_ACCEPT_KERN		(kern)
typedef struct sock *(*l45_accept_fn)(struct sock *, int, int *, bool);
#endif

/*
 * proto->connect takes a struct sockaddr_unsized from 6.19 (the struct was
 * introduced in the same release).
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 19, 0)
typedef struct sockaddr_unsized l45_sockaddr_t;
#else
typedef struct sockaddr l45_sockaddr_t;
#endif
typedef int (*l45_connect_fn)(struct sock *, l45_sockaddr_t *, int);

/*
 * proto->sendpage existed until 6.4 (sendfile/splice on a socket); from 6.5
 * splice arrives through sendmsg with MSG_SPLICE_PAGES and an ITER_BVEC.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 5, 0)
#define L45_HAVE_SENDPAGE 1
typedef int (*l45_sendpage_fn)(struct sock *, struct page *, int, size_t,
			       int);
#endif

#ifndef MSG_SPLICE_PAGES
#define MSG_SPLICE_PAGES 0
#endif

/*
 * When Layer 4.5 sends its own kernel buffer through the application's
 * msghdr, zero-copy must be off: the kvec's pages are not the
 * application's.  msg_ubuf exists from 6.0.
 */
struct l45_msg_zc {
	unsigned int flags;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 0, 0)
	struct ubuf_info *ubuf;
#endif
};

static inline void l45_msg_zc_off(struct msghdr *msg, struct l45_msg_zc *s)
{
	s->flags = msg->msg_flags;
	msg->msg_flags &= ~(MSG_ZEROCOPY | MSG_SPLICE_PAGES);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 0, 0)
	s->ubuf = msg->msg_ubuf;
	msg->msg_ubuf = NULL;
#endif
}

static inline void l45_msg_zc_restore(struct msghdr *msg,
				      const struct l45_msg_zc *s)
{
	msg->msg_flags = s->flags;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 0, 0)
	msg->msg_ubuf = s->ubuf;
#endif
}

/*
 * Everything a receive writes into the caller's msghdr besides the data,
 * so that a dropped message leaves no trace (name, control, flags).  The
 * msg_control member exists under that name on every supported kernel.
 */
struct l45_msg_rx_state {
	void *control;
	__kernel_size_t controllen;
	int namelen;
	unsigned int flags;
};

static inline void l45_msg_rx_save(const struct msghdr *msg,
				   struct l45_msg_rx_state *s)
{
	s->control = msg->msg_control;
	s->controllen = msg->msg_controllen;
	s->namelen = msg->msg_namelen;
	s->flags = msg->msg_flags;
}

static inline void l45_msg_rx_restore(struct msghdr *msg,
				      const struct l45_msg_rx_state *s)
{
	msg->msg_control = s->control;
	msg->msg_controllen = s->controllen;
	msg->msg_namelen = s->namelen;
	msg->msg_flags = s->flags;
}

/*
 * Waiting until no CPU runs the proto->init wrapper any more.  Tasks RCU is
 * the exact tool (the wrapper never sleeps, so a voluntary context switch
 * proves the task left it); without CONFIG_TASKS_RCU the header maps
 * synchronize_rcu_tasks() to synchronize_rcu(), which is enough on
 * non-preemptible kernels, the only ones that lack Tasks RCU.
 */
static inline void l45_sync_hook_users(void)
{
	synchronize_rcu_tasks();
}

#endif /* _L45_COMPAT_H */
