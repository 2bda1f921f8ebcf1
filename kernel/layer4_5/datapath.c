// SPDX-License-Identifier: GPL-2.0
/*
 * Layer 4.5 data path: offer each message to the attached modules, which
 * are alternatives (R8: the first one that does not decline decides), and
 * act on the deciding verdict (R3-R7, R9), on send and on receive.
 */
#define pr_fmt(fmt) "layer4_5: " fmt

#include <linux/slab.h>
#include <linux/uio.h>
#include <linux/in.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <net/inet_sock.h>
#include "l45.h"

typedef int (*l45_sendmsg_fn)(struct sock *, struct msghdr *, size_t);

enum l45_verdict {
	L45_V_PASS,	/* every module declined, or no_cust/skip: unmodified */
	L45_V_REPLACE,	/* R5: d->out[0, out_len) takes the message's place */
	L45_V_DROP,	/* R3 */
	L45_V_ERROR,	/* R4, and R5's copy_length > buf_size */
};

/* One message offered to the modules of one direction. */
struct l45_round {
	struct iov_iter *src;	/* the original message: the application's
				 * iterator (send), a kvec over d->in (recv) */
	size_t len;		/* bytes in it */
	size_t capacity;	/* recv: the application's buffer size */
	size_t out_len;		/* L45_V_REPLACE: bytes in d->out */
	int err;		/* L45_V_ERROR */
};

/*
 * R8: the modules of a socket are alternatives, offered the message in
 * slot order (priority, then registration).  Every module is offered the
 * original message; a module that declines (try_next, or inactive per R11)
 * passes it to the next one.  The first module that does not decline
 * decides: its verdict is the round's and no later module is asked.  If
 * all decline, the message passes unmodified.  Precedence when a module
 * sets several: set_cust_to_skip, no_cust, try_next, copy_length.
 *
 * Every module writes into the same output buffer d->out; what a module
 * that declined left there is simply overwritten.  It never reads d->out:
 * it reads the message through its own copy of rd->src (R9), so whatever
 * it did to *src_iter is gone for the next module and for the verdict.
 *
 * Called with the direction's mutex held and no spinlock: callbacks may
 * sleep (R15; contract section 4).  Each callback runs inside an l45_srcu
 * read-side section, which allows sleeping, and with a reference on its
 * wrapper (the caller's snapshot).
 */
static int l45_run_modules(struct l45_sock *st, int dir,
			   struct l45_cust **snap, int n, struct l45_round *rd)
{
	struct l45_dir *d = &st->dir[dir];
	struct customization_buffer *cb = &d->cb;
	struct customization_flow flow;
	struct iov_iter it;
	int i;

	for (i = 0; i < n; i++) {
		struct l45_cust *c = snap[i];
		customization_fn fn = dir == L45_SEND ? c->send_fn : c->recv_fn;
		bool skip, nocust, next;
		ssize_t cl;
		int idx;

		/*
		 * The module cannot finish unregistering while we are inside
		 * l45_srcu (registry.c).  Unregistered meanwhile: declined;
		 * inactive (R11): attached, not called, declined.
		 */
		idx = srcu_read_lock(&l45_srcu);
		if (!l45_cust_alive(c) || !l45_cust_active(c)) {
			srcu_read_unlock(&l45_srcu, idx);
			continue;
		}
		/*
		 * Fresh verdict before every callback, so a flag left by an
		 * earlier message or module never leaks (R8; section 4).
		 */
		cb->buf = d->out;
		cb->buf_size = d->size;
		cb->copy_length = 0;
		cb->set_cust_to_skip = false;
		cb->no_cust = false;
		cb->try_next = false;
		/*
		 * R9: each module gets a fresh copy of the original iterator.
		 * Whatever it does to it, the application's iterator (send),
		 * the bounce buffer (recv) and the next module's view stay as
		 * they were.  No filter on the iterator kind: IOVEC, UBUF,
		 * KVEC, BVEC all go to modules.
		 */
		it = *rd->src;
		cb->src_iter = &it;
		if (dir == L45_SEND) {
			cb->length = rd->len;
			cb->recv_return = 0;
		} else {
			cb->length = rd->capacity;
			cb->recv_return = rd->len;
		}
		flow = st->flow;	/* the module cannot corrupt ours */

		fn(cb, &flow);

		cl = READ_ONCE(cb->copy_length);
		skip = READ_ONCE(cb->set_cust_to_skip);
		nocust = READ_ONCE(cb->no_cust);
		next = READ_ONCE(cb->try_next);
		srcu_read_unlock(&l45_srcu, idx);

		/* The first module that does not decline decides (R8). */
		if (skip) {
			l45_sock_set_skip(st);
			return L45_V_PASS;
		}
		if (nocust)
			return L45_V_PASS;
		if (next)
			continue;
		/* copy_length is signed: the error verdict can fire (section 4). */
		if (cl == 0)
			return L45_V_DROP;
		if (cl < 0) {
			rd->err = cl >= -MAX_ERRNO ? (int)cl : -EIO;
			return L45_V_ERROR;
		}
		if (cl > d->size) {
			pr_warn_ratelimited("customization %u: copy_length %zd exceeds buf_size %u, failing the %s with EMSGSIZE\n",
					    c->id, cl, d->size,
					    dir == L45_SEND ? "send" : "recv");
			rd->err = -EMSGSIZE;
			return L45_V_ERROR;
		}
		rd->out_len = cl;
		return L45_V_REPLACE;
	}
	return L45_V_PASS;	/* all declined (R8) */
}

static bool l45_transient(int err)
{
	return err == -EAGAIN || err == -EINTR || err == -ERESTARTSYS ||
	       err == -ENOBUFS || err == -ENOMEM;
}

/* Send kernel bytes through the application's msghdr (name, control). */
static int l45_xmit(struct sock *sk, struct msghdr *msg, void *data,
		    size_t len, l45_sendmsg_fn orig)
{
	struct iov_iter saved = msg->msg_iter;
	struct kvec kv = { .iov_base = data, .iov_len = len };
	struct l45_msg_zc zc;
	int r;

	l45_msg_zc_off(msg, &zc);
	iov_iter_kvec(&msg->msg_iter, L45_ITER_SOURCE, &kv, 1, len);
	r = orig(sk, msg, len);
	msg->msg_iter = saved;
	l45_msg_zc_restore(msg, &zc);
	return r;
}

/*
 * Send what an earlier non-blocking (or interrupted) send kept back (R5).
 * 0 when nothing is left; a transient error keeps the rest for later, a
 * hard one discards it (the stream is broken anyway).
 */
static int l45_flush(struct sock *sk, struct msghdr *msg, struct l45_dir *d,
		     l45_sendmsg_fn orig)
{
	while (d->pend_len) {
		int r = l45_xmit(sk, msg, l45_pend_data(d), d->pend_len,
				 orig);

		if (r <= 0) {
			if (!r)
				r = -EAGAIN;
			if (!l45_transient(r)) {
				d->pend_off = 0;
				WRITE_ONCE(d->pend_len, 0);
			}
			return r;
		}
		d->pend_off += r;
		WRITE_ONCE(d->pend_len, d->pend_len - r);
	}
	return 0;
}

/*
 * R5 on send: the module's bytes go to the transport and the application
 * is told its whole message went.  UDP: one datagram, its error is the
 * call's error.  TCP: loop on partial writes; what a non-blocking socket
 * (or a signal, or SO_SNDTIMEO) leaves unsent is kept and flushed first on
 * the next send, so no customized byte is lost to a partial write.  Only a
 * hard error with nothing sent fails the call.
 */
static int l45_send_replace(struct l45_sock *st, struct sock *sk,
			    struct msghdr *msg, size_t len, struct l45_dir *d,
			    size_t clen, l45_sendmsg_fn orig)
{
	size_t sent = 0;
	int r = 0;

	if (!st->is_tcp) {
		r = l45_xmit(sk, msg, d->out, clen, orig);
		if (r < 0)
			return r;
		iov_iter_advance(&msg->msg_iter, iov_iter_count(&msg->msg_iter));
		return len;
	}
	while (sent < clen) {
		r = l45_xmit(sk, msg, d->out + sent, clen - sent, orig);
		if (r <= 0)
			break;
		sent += r;
	}
	if (sent < clen) {
		if (!sent && r < 0 && !l45_transient(r))
			return r;
		d->pend_in = false;	/* the rest lives in d->out */
		d->pend_off = sent;
		WRITE_ONCE(d->pend_len, clen - sent);
	}
	iov_iter_advance(&msg->msg_iter, iov_iter_count(&msg->msg_iter));
	return len;
}

/* Find (or start tracking) the socket for a send; NULL = not ours. */
static struct l45_sock *l45_sock_for_send(struct sock *sk,
					  struct msghdr *msg)
{
	bool connected = sk->sk_state == TCP_ESTABLISHED ||
			 sk->sk_state == TCP_CLOSE_WAIT;
	struct l45_sock *st = l45_sock_lookup(sk);
	__be32 daddr = 0;
	__be16 dport = 0;

	if (st && smp_load_acquire(&st->flow_done))
		return st;
	if (sk->sk_protocol == IPPROTO_TCP) {
		/*
		 * TCP is tracked at connect/accept; this catches sockets that
		 * got connected another way (e.g. TCP Fast Open sendto).
		 */
		if (!connected)
			goto none;
	} else if (!connected) {
		/* Unconnected UDP: the first message's destination (R14). */
		DECLARE_SOCKADDR(struct sockaddr_in *, sin, msg->msg_name);

		if (!sin || msg->msg_namelen < sizeof(*sin) ||
		    sin->sin_family != AF_INET)
			goto none;	/* the transport will refuse it */
		daddr = sin->sin_addr.s_addr;
		dport = sin->sin_port;
	}
	if (!st)
		st = l45_sock_get_or_create(sk);
	if (st)
		l45_sock_complete_flow(st, daddr, dport);
	return st;
none:
	if (st)
		l45_sock_put(st);
	return NULL;
}

int l45_sendmsg(struct sock *sk, struct msghdr *msg, size_t len,
		l45_sendmsg_fn orig)
{
	struct l45_cust *snap[L45_MAX_SLOTS];
	bool nonblock = msg->msg_flags & MSG_DONTWAIT;
	struct l45_round rd = { .src = &msg->msg_iter, .len = len };
	struct l45_sock *st;
	struct l45_dir *d;
	int n = 0, ret;
	u32 bufsz;

	st = l45_sock_for_send(sk, msg);
	if (!st)
		return orig(sk, msg, len);
	if (l45_sock_idle(st, L45_SEND)) {
		l45_sock_put(st);
		return orig(sk, msg, len);
	}
	d = &st->dir[L45_SEND];
	/*
	 * The direction's mutex may be held across the transport call by a
	 * blocked sender; a non-blocking caller must not wait for it.
	 */
	if (nonblock) {
		if (!mutex_trylock(&d->lock)) {
			ret = -EAGAIN;
			goto out_put;
		}
	} else if (mutex_lock_interruptible(&d->lock)) {
		ret = -ERESTARTSYS;
		goto out_put;
	}
	if (d->pend_len) {
		ret = l45_flush(sk, msg, d, orig);
		if (ret)
			goto out_unlock;
	}
	n = l45_sock_snapshot(st, L45_SEND, snap, &bufsz);
	/* Zero-length messages are not offered to modules (decision). */
	if (!n || !len) {
		if (!n && d->out)
			l45_dir_free(d);	/* last module gone (R2) */
		ret = orig(sk, msg, len);
		goto out_snap;
	}
	/*
	 * Send needs only the output buffer: modules read the application's
	 * iterator, and the flush above left no rest in d->out.
	 */
	ret = l45_dir_ensure(d, bufsz, false, 0);
	if (ret)
		goto out_snap;

	switch (l45_run_modules(st, L45_SEND, snap, n, &rd)) {
	case L45_V_DROP:
		/* R3: nothing reaches the transport, the app is told it all went. */
		iov_iter_advance(&msg->msg_iter, iov_iter_count(&msg->msg_iter));
		ret = len;
		break;
	case L45_V_ERROR:
		ret = rd.err;	/* R4 */
		break;
	case L45_V_REPLACE:
		ret = l45_send_replace(st, sk, msg, len, d, rd.out_len, orig);
		break;
	default:
		ret = orig(sk, msg, len);	/* unmodified (R6-R8) */
		break;
	}
out_snap:
	l45_snapshot_put(snap, n);
out_unlock:
	mutex_unlock(&d->lock);
out_put:
	l45_sock_put(st);
	return ret;
}

/*
 * At close, one non-blocking attempt to push bytes a non-blocking send
 * kept back (decision: close never blocks on it; what the socket buffer
 * cannot take then is lost, documented in README).
 */
void l45_close_flush(struct sock *sk, l45_sendmsg_fn orig)
{
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
	struct l45_sock *st = l45_sock_lookup(sk);
	struct l45_dir *d;

	if (!st)
		return;
	d = &st->dir[L45_SEND];
	mutex_lock(&d->lock);
	if (d->pend_len && st->is_tcp && l45_flush(sk, &msg, d, orig))
		pr_debug("close: %u customized bytes could not be sent\n",
			 d->pend_len);
	mutex_unlock(&d->lock);
	l45_sock_put(st);
}

/* Hand pending received bytes to the application; consumes them. */
static int l45_deliver_pending(struct l45_dir *d, struct msghdr *msg,
			       size_t room, bool peek)
{
	size_t want = min_t(size_t, d->pend_len, room);
	size_t got;

	if (!want)
		return 0;
	got = copy_to_iter(l45_pend_data(d), want, &msg->msg_iter);
	if (!got)
		return -EFAULT;
	if (!peek) {
		d->pend_off += got;
		WRITE_ONCE(d->pend_len, d->pend_len - got);
	}
	return got;
}

/*
 * Receive, with d->lock held.  One transport read lands in the bounce
 * buffer d->in (up to the whole scratch size, whatever the application
 * asked for, so modules see messages as the transport has them).  The
 * modules are offered it and write into d->out (R8); the deciding
 * module's output, or the original message in d->in if all declined, is
 * delivered.  Two buffers because a module reads the message (d->in)
 * while it writes its output (d->out).  TCP keeps what does not fit for
 * the next receive, served before the transport is read again (R5) and
 * reported by poll; UDP truncates and reports MSG_TRUNC.  A dropped
 * message is consumed; a blocking receive waits for the next one within
 * SO_RCVTIMEO (R3).
 */
static int l45_recv_locked(struct l45_sock *st, struct sock *sk,
			   struct msghdr *msg, size_t len, int flags,
			   int *addr_len, l45_recvmsg_fn orig)
{
	struct l45_dir *d = &st->dir[L45_RECV];
	bool nonblock = flags & MSG_DONTWAIT;
	bool waitall = st->is_tcp && (flags & MSG_WAITALL);
	int tflags = flags & ~(MSG_WAITALL | MSG_TRUNC);
	long timeo = sock_rcvtimeo(sk, nonblock);
	unsigned long deadline = jiffies + timeo;
	struct l45_cust *snap[L45_MAX_SLOTS];
	size_t copied = 0;
	int ret, n, r, v;
	u32 bufsz;

	for (;;) {
		struct l45_msg_rx_state rxs;
		struct sockaddr_in sin_local;
		struct l45_round rd = { .capacity = len };
		struct iov_iter saved, src;
		bool name_local = false;
		bool flow_done;
		size_t dlen;
		struct kvec kv;
		void *data;

		if (d->pend_len) {
			r = l45_deliver_pending(d, msg, len - copied, false);
			if (r < 0) {
				ret = copied ? copied : r;
				break;
			}
			copied += r;
			if (!waitall || copied >= len) {
				ret = copied;
				break;
			}
			continue;
		}

		n = l45_sock_snapshot(st, L45_RECV, snap, &bufsz);
		flow_done = smp_load_acquire(&st->flow_done);
		if (!n && flow_done) {
			if (d->out)
				l45_dir_free(d);	/* last module gone (R2) */
			r = l45_call_recvmsg(orig, sk, msg, len - copied, flags,
					     addr_len);
			if (r < 0)
				ret = copied ? copied : r;
			else
				ret = copied + r;
			break;
		}
		ret = l45_dir_ensure(d, bufsz, true, 0);
		if (ret) {
			l45_snapshot_put(snap, n);
			ret = copied ? copied : ret;
			break;
		}

		l45_msg_rx_save(msg, &rxs);
		saved = msg->msg_iter;
		if (!flow_done && !msg->msg_name) {
			/* recv() without an address: we still need the sender. */
			memset(&sin_local, 0, sizeof(sin_local));
			msg->msg_name = &sin_local;
			name_local = true;
		}
		kv.iov_base = d->in;
		kv.iov_len = d->size;
		iov_iter_kvec(&msg->msg_iter, L45_ITER_DEST, &kv, 1, d->size);
		r = l45_call_recvmsg(orig, sk, msg, d->size, tflags, addr_len);
		msg->msg_iter = saved;

		if (r > 0 && !flow_done) {
			/*
			 * First message of an unconnected UDP socket: its sender
			 * is the peer (R14).  Attach before customizing it.
			 */
			DECLARE_SOCKADDR(struct sockaddr_in *, sin, msg->msg_name);
			__be32 daddr = 0;
			__be16 dport = 0;

			if (sin && sin->sin_family == AF_INET) {
				daddr = sin->sin_addr.s_addr;
				dport = sin->sin_port;
			}
			l45_sock_complete_flow(st, daddr, dport);
			l45_snapshot_put(snap, n);
			n = l45_sock_snapshot(st, L45_RECV, snap, &bufsz);
			if (n && l45_dir_ensure(d, bufsz, true, r)) {
				l45_snapshot_put(snap, n);
				n = 0;	/* no memory for larger buffers: pass */
			}
		}
		if (name_local) {
			msg->msg_name = NULL;
			msg->msg_namelen = rxs.namelen;
		}
		if (r <= 0) {
			l45_snapshot_put(snap, n);
			ret = copied ? copied : r;
			break;
		}

		/* The original message every module is offered (R8, R9). */
		kv.iov_base = d->in;
		kv.iov_len = r;
		iov_iter_kvec(&src, L45_ITER_SOURCE, &kv, 1, r);
		rd.src = &src;
		rd.len = r;
		v = L45_V_PASS;
		if (n)
			v = l45_run_modules(st, L45_RECV, snap, n, &rd);
		l45_snapshot_put(snap, n);

		if (v == L45_V_DROP) {
			if (nonblock) {
				ret = copied ? copied : -EAGAIN;
				break;
			}
			if (timeo != MAX_SCHEDULE_TIMEOUT &&
			    time_after_eq(jiffies, deadline)) {
				ret = copied ? copied : -EAGAIN;
				break;
			}
			if (signal_pending(current)) {
				ret = copied ? copied : sock_intr_errno(timeo);
				break;
			}
			/* Leave no name/control/flags of the dropped message. */
			l45_msg_rx_restore(msg, &rxs);
			continue;
		}
		if (v == L45_V_ERROR) {
			ret = copied ? copied : rd.err;
			break;
		}
		if (v == L45_V_REPLACE) {
			data = d->out;
			dlen = rd.out_len;
		} else {
			data = d->in;	/* unmodified (R6-R8) */
			dlen = r;
		}
		if (!st->is_tcp) {
			size_t want = min_t(size_t, dlen, len);

			if (copy_to_iter(data, want, &msg->msg_iter) != want) {
				ret = -EFAULT;
				break;
			}
			if (dlen > len)
				msg->msg_flags |= MSG_TRUNC;
			else
				msg->msg_flags &= ~MSG_TRUNC;
			/* recv(MSG_TRUNC) reports the real datagram length. */
			ret = (flags & MSG_TRUNC) ? dlen : want;
			break;
		}
		/* TCP: deliver through the pending path at the loop's top. */
		d->pend_in = data == d->in;
		d->pend_off = 0;
		WRITE_ONCE(d->pend_len, dlen);
	}
	return ret;
}

int l45_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, int flags,
		int *addr_len, l45_recvmsg_fn orig)
{
	bool nonblock = flags & MSG_DONTWAIT;
	struct l45_sock *st;
	struct l45_dir *d;
	int ret;

	/*
	 * The error queue and TCP urgent data are not messages of the
	 * stream, and TCP's MSG_TRUNC discards bytes instead of delivering
	 * them: all passed through uncustomized (decision).
	 */
	if (flags & (MSG_ERRQUEUE | MSG_OOB) || !len ||
	    (sk->sk_protocol == IPPROTO_TCP && (flags & MSG_TRUNC)))
		return l45_call_recvmsg(orig, sk, msg, len, flags, addr_len);

	st = l45_sock_lookup(sk);
	if (!st) {
		bool connected = sk->sk_state == TCP_ESTABLISHED ||
				 sk->sk_state == TCP_CLOSE_WAIT;

		/* TCP: tracked at connect/accept; UDP: at first send/recv. */
		if (sk->sk_protocol != IPPROTO_TCP || connected)
			st = l45_sock_get_or_create(sk);
		if (!st)
			return l45_call_recvmsg(orig, sk, msg, len, flags,
						addr_len);
		/*
		 * Connected: the peer is known now.  Unconnected UDP waits
		 * for its first datagram's sender (l45_recv_locked).
		 */
		if (connected)
			l45_sock_complete_flow(st, 0, 0);
	}
	d = &st->dir[L45_RECV];
	if (l45_sock_idle(st, L45_RECV)) {
		l45_sock_put(st);
		return l45_call_recvmsg(orig, sk, msg, len, flags, addr_len);
	}

	if (flags & MSG_PEEK) {
		/*
		 * Peeking shows bytes Layer 4.5 holds for the application if
		 * any, else the raw transport data (decision: a peek does not
		 * run modules, which would consume their state).
		 */
		if (!READ_ONCE(d->pend_len)) {
			l45_sock_put(st);
			return l45_call_recvmsg(orig, sk, msg, len, flags,
						addr_len);
		}
		mutex_lock(&d->lock);
		ret = l45_deliver_pending(d, msg, len, true);
		mutex_unlock(&d->lock);
		l45_sock_put(st);
		if (!ret)	/* consumed meanwhile by another reader */
			ret = l45_call_recvmsg(orig, sk, msg, len, flags,
					       addr_len);
		return ret;
	}

	if (nonblock) {
		if (!mutex_trylock(&d->lock)) {
			l45_sock_put(st);
			return -EAGAIN;
		}
	} else if (mutex_lock_interruptible(&d->lock)) {
		l45_sock_put(st);
		return -ERESTARTSYS;
	}
	ret = l45_recv_locked(st, sk, msg, len, flags, addr_len, orig);
	mutex_unlock(&d->lock);
	l45_sock_put(st);
	return ret;
}
