// SPDX-License-Identifier: GPL-2.0
/*
 * Hooking Layer 4.5 between the socket layer and TCP/UDP over IPv4 without
 * modifying the kernel, so one source works as a module on a stock
 * distribution kernel and built in.
 *
 * At init, tcp_prot.init and udp_prot.init (exported, writable) are
 * wrapped.  The wrapper moves each new user IPv4 TCP/UDP socket onto Layer
 * 4.5's own copies of the protocol (l45_tcp_prot/l45_udp_prot: tcp_prot and
 * udp_prot with sendmsg, recvmsg, connect, accept, close, destroy replaced)
 * and of the socket operations (inet_stream_ops/inet_dgram_ops with
 * .owner = THIS_MODULE, and poll on streams).
 *
 * Lifetime: both sk->sk_prot and sk->sk_prot_creator point at the copy
 * and the wrapper takes a module reference, which the core kernel drops in
 * sk_prot_free() (it puts sk_prot_creator->owner) unless the socket is
 * given back to the plain protocol at close (l45_unadopt); socket creation
 * takes a second one for sock->ops->owner, dropped by sock_release() after
 * our close wrapper has returned.  So the module can never be unloaded while a
 * socket that runs through its text exists: "rmmod layer4_5" with live
 * sockets fails with EBUSY instead of hanging or crashing.  TCP children of
 * a listener inherit the copy through sk_clone_lock() (it allocates with
 * sk->sk_prot, sets sk_prot_creator to it and takes its owner's reference;
 * the same since 4.14, so on 5.10 .. 7.x) and the accepted socket inherits
 * the listener's ops with a reference (do_accept).
 *
 * Sockets that existed before Layer 4.5 was loaded keep the plain
 * protocol and are never customized.
 */
#define pr_fmt(fmt) "layer4_5: " fmt

#include <linux/module.h>
#include <linux/highmem.h>
#include <linux/net.h>
#include <net/sock.h>
#include <net/tcp.h>
#include <net/udp.h>
#include <net/inet_common.h>
#include <net/protocol.h>
#include "l45.h"

struct l45_orig {
	int (*init)(struct sock *sk);
	void (*close)(struct sock *sk, long timeout);
	void (*destroy)(struct sock *sk);
	l45_connect_fn connect;
	l45_accept_fn accept;
	int (*sendmsg)(struct sock *sk, struct msghdr *msg, size_t len);
	l45_recvmsg_fn recvmsg;
#ifdef L45_HAVE_SENDPAGE
	l45_sendpage_fn sendpage;
#endif
};

static struct l45_orig l45_tcp_orig, l45_udp_orig;
static struct proto l45_tcp_prot, l45_udp_prot;
static struct proto_ops l45_stream_ops, l45_dgram_ops;

/*
 * Take over a freshly initialised socket.  Runs from proto->init inside
 * inet_create(): never sleeps (the exit path relies on that), touches only
 * the new socket.
 */
static void l45_adopt(struct sock *sk, struct proto *prot,
		      const struct proto_ops *base, struct proto_ops *ops)
{
	struct socket *sock = sk->sk_socket;

	/* Kernel sockets and anything unusual stay as they are. */
	if (sk->sk_kern_sock || sk->sk_family != AF_INET || !sock ||
	    sock->ops != base)
		return;
	/*
	 * try_module_get fails once rmmod has committed: the socket then
	 * simply stays on the plain protocol.
	 */
	if (!try_module_get(THIS_MODULE))
		return;
	WRITE_ONCE(sk->sk_prot, prot);
	sk->sk_prot_creator = prot;
	sock->ops = ops;
}

static int l45_tcp_init_sock(struct sock *sk)
{
	int err = l45_tcp_orig.init(sk);

	if (!err)
		l45_adopt(sk, &l45_tcp_prot, &inet_stream_ops, &l45_stream_ops);
	return err;
}

static int l45_udp_init_sock(struct sock *sk)
{
	int err = l45_udp_orig.init(sk);

	if (!err)
		l45_adopt(sk, &l45_udp_prot, &inet_dgram_ops, &l45_dgram_ops);
	return err;
}

static int l45_tcp_sendmsg(struct sock *sk, struct msghdr *msg, size_t len)
{
	return l45_sendmsg(sk, msg, len, l45_tcp_orig.sendmsg);
}

static int l45_udp_sendmsg(struct sock *sk, struct msghdr *msg, size_t len)
{
	return l45_sendmsg(sk, msg, len, l45_udp_orig.sendmsg);
}

static int l45_tcp_recvmsg(L45_RECVMSG_PARAMS(sk, msg, len, flags, addr_len))
{
	return l45_recvmsg(sk, msg, len, L45_RECVMSG_FLAGS(flags),
			   L45_RECVMSG_ADDR_LEN(addr_len), l45_tcp_orig.recvmsg);
}

static int l45_udp_recvmsg(L45_RECVMSG_PARAMS(sk, msg, len, flags, addr_len))
{
	return l45_recvmsg(sk, msg, len, L45_RECVMSG_FLAGS(flags),
			   L45_RECVMSG_ADDR_LEN(addr_len), l45_udp_orig.recvmsg);
}

/*
 * TCP flows are taken at connect, once tcp_v4_connect() has bound the
 * local side and sent the SYN (R14).  Runs under lock_sock(), which may
 * sleep.
 */
static int l45_tcp_connect(struct sock *sk, l45_sockaddr_t *uaddr,
			   int addr_len)
{
	int err = l45_tcp_orig.connect(sk, uaddr, addr_len);

	if (!err)
		l45_track_connected(sk);
	return err;
}

/* ... and at accept, for the child, named after the accepting thread. */
static struct sock *l45_tcp_accept(L45_ACCEPT_PARAMS(sk))
{
	struct sock *newsk = l45_tcp_orig.accept(L45_ACCEPT_ARGS(sk));

	/*
	 * A failed accept (non-blocking with an empty queue, signal, ...)
	 * returns NULL: never dereferenced (contract section 4).
	 */
	if (newsk && !L45_ACCEPT_KERN)
		l45_track_connected(newsk);
	return newsk;
}

static void l45_release_state(struct sock *sk, bool deferred)
{
	struct l45_sock *st = l45_sock_unlink(sk);

	if (!st)
		return;
	if (deferred)
		l45_sock_put_deferred(st);
	else
		l45_sock_put(st);
}

/*
 * After close the application cannot send or receive any more, so the
 * socket goes back to the plain protocol before the transport's close
 * runs: lingering TCP states (FIN_WAIT, LAST_ACK) then never call into
 * Layer 4.5, and a TIME_WAIT socket (tw_prot = sk_prot_creator, with a
 * module reference) does not pin the module for 60 seconds.  The
 * reference taken in l45_adopt() is returned here; the close wrapper keeps
 * running under the sock->ops reference, which sock_release() drops only
 * after we returned.  If someone else (sockmap, a ULP) replaced sk_prot,
 * the socket keeps its references until it is freed (still safe).
 */
static void l45_unadopt(struct sock *sk, struct proto *ours,
			struct proto *plain)
{
	if (READ_ONCE(sk->sk_prot) != ours || sk->sk_prot_creator != ours)
		return;
	WRITE_ONCE(sk->sk_prot, plain);
	sk->sk_prot_creator = plain;
	module_put(THIS_MODULE);
}

/* Close: modules detach and buffers are freed here, in process context. */
static void l45_tcp_close(struct sock *sk, long timeout)
{
	l45_close_flush(sk, l45_tcp_orig.sendmsg);
	l45_release_state(sk, false);
	l45_unadopt(sk, &l45_tcp_prot, &tcp_prot);
	l45_tcp_orig.close(sk, timeout);
}

static void l45_udp_close(struct sock *sk, long timeout)
{
	l45_release_state(sk, false);
	l45_unadopt(sk, &l45_udp_prot, &udp_prot);
	l45_udp_orig.close(sk, timeout);
}

/*
 * Destroy: a safety net (the state is normally gone at close).  May run in
 * softirq for orphaned TCP sockets; the final free is then deferred.
 */
static void l45_tcp_destroy(struct sock *sk)
{
	l45_release_state(sk, true);
	l45_tcp_orig.destroy(sk);
}

static void l45_udp_destroy(struct sock *sk)
{
	l45_release_state(sk, true);
	l45_udp_orig.destroy(sk);
}

#ifdef L45_HAVE_SENDPAGE
/*
 * Before 6.5, sendfile()/splice() reach the protocol through sendpage.  On
 * a customized socket the page is handed to the normal send path as a
 * one-segment kvec message; otherwise it goes straight through.
 */
static int l45_sendpage(struct sock *sk, struct page *page, int offset,
			size_t size, int flags, const struct l45_orig *o)
{
	struct msghdr msg = {};
	struct l45_sock *st;
	struct kvec kv;
	int ret;

	st = l45_sock_lookup(sk);
	if (!st)
		return o->sendpage(sk, page, offset, size, flags);
	l45_sock_put(st);
	msg.msg_flags = flags & ~MSG_SENDPAGE_NOTLAST;
	if (flags & MSG_SENDPAGE_NOTLAST)
		msg.msg_flags |= MSG_MORE;
	kv.iov_base = kmap(page) + offset;
	kv.iov_len = size;
	iov_iter_kvec(&msg.msg_iter, L45_ITER_SOURCE, &kv, 1, size);
	ret = l45_sendmsg(sk, &msg, size, o->sendmsg);
	kunmap(page);
	return ret;
}

static int l45_tcp_sendpage(struct sock *sk, struct page *page, int offset,
			    size_t size, int flags)
{
	return l45_sendpage(sk, page, offset, size, flags, &l45_tcp_orig);
}

static int l45_udp_sendpage(struct sock *sk, struct page *page, int offset,
			    size_t size, int flags)
{
	return l45_sendpage(sk, page, offset, size, flags, &l45_udp_orig);
}
#endif

/*
 * A stream keeps received bytes that did not fit the application's buffer
 * (R5); poll must report them or an event-driven reader would wait forever.
 */
static __poll_t l45_stream_poll(struct file *file, struct socket *sock,
				poll_table *wait)
{
	__poll_t mask = inet_stream_ops.poll(file, sock, wait);
	struct sock *sk = sock->sk;

	if (sk && l45_sock_recv_pending(sk))
		mask |= EPOLLIN | EPOLLRDNORM;
	return mask;
}

static void l45_save_orig(struct l45_orig *o, const struct proto *p)
{
	o->init = p->init;
	o->close = p->close;
	o->destroy = p->destroy;
	o->connect = p->connect;
	o->accept = p->accept;
	o->sendmsg = p->sendmsg;
	o->recvmsg = p->recvmsg;
#ifdef L45_HAVE_SENDPAGE
	o->sendpage = p->sendpage;
#endif
}

int l45_proto_init(void)
{
	if (!tcp_prot.init || !udp_prot.init || !tcp_prot.destroy ||
	    !udp_prot.destroy || !tcp_prot.accept) {
		pr_err("unexpected tcp_prot/udp_prot layout\n");
		return -ENODEV;
	}

	l45_save_orig(&l45_tcp_orig, &tcp_prot);
	l45_tcp_prot = tcp_prot;
	l45_tcp_prot.owner = THIS_MODULE;
	l45_tcp_prot.close = l45_tcp_close;
	l45_tcp_prot.destroy = l45_tcp_destroy;
	l45_tcp_prot.connect = l45_tcp_connect;
	l45_tcp_prot.accept = l45_tcp_accept;
	l45_tcp_prot.sendmsg = l45_tcp_sendmsg;
	l45_tcp_prot.recvmsg = l45_tcp_recvmsg;
#ifdef L45_HAVE_SENDPAGE
	if (l45_tcp_orig.sendpage)
		l45_tcp_prot.sendpage = l45_tcp_sendpage;
#endif

	l45_save_orig(&l45_udp_orig, &udp_prot);
	l45_udp_prot = udp_prot;
	l45_udp_prot.owner = THIS_MODULE;
	l45_udp_prot.close = l45_udp_close;
	l45_udp_prot.destroy = l45_udp_destroy;
	l45_udp_prot.sendmsg = l45_udp_sendmsg;
	l45_udp_prot.recvmsg = l45_udp_recvmsg;
#ifdef L45_HAVE_SENDPAGE
	if (l45_udp_orig.sendpage)
		l45_udp_prot.sendpage = l45_udp_sendpage;
#endif

	l45_stream_ops = inet_stream_ops;
	l45_stream_ops.owner = THIS_MODULE;
	l45_stream_ops.poll = l45_stream_poll;
	l45_dgram_ops = inet_dgram_ops;
	l45_dgram_ops.owner = THIS_MODULE;

	/* Copies complete before any socket can be switched to them. */
	smp_wmb();
	WRITE_ONCE(tcp_prot.init, l45_tcp_init_sock);
	WRITE_ONCE(udp_prot.init, l45_udp_init_sock);
	return 0;
}

void l45_proto_exit(void)
{
	WRITE_ONCE(tcp_prot.init, l45_tcp_orig.init);
	WRITE_ONCE(udp_prot.init, l45_udp_orig.init);
	/*
	 * A task may have loaded the old pointer and be inside an init
	 * wrapper without a module reference yet; wait until every task
	 * has left it (the wrappers never sleep).
	 */
	l45_sync_hook_users();
}
