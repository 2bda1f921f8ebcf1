// SPDX-License-Identifier: GPL-2.0
/*
 * Layer 4.5 per-socket state: tracking, the flow, matching and attaching
 * modules, slot ordering, scratch buffers, teardown.
 */
#define pr_fmt(fmt) "layer4_5: " fmt

#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/in.h>
#include <net/inet_sock.h>
#include <net/route.h>
#include "l45.h"

/*
 * Sockets are found by their struct sock pointer in a hashtable rather than
 * through sk_user_data, which sockmap, tunnels and others own.  Lookups run
 * under RCU; entries are freed with kfree_rcu.
 */
static struct rhashtable l45_socks;
static struct workqueue_struct *l45_wq;

static const struct rhashtable_params l45_sock_params = {
	.key_len = sizeof(struct sock *),
	.key_offset = offsetof(struct l45_sock, sk),
	.head_offset = offsetof(struct l45_sock, hnode),
	.automatic_shrinking = true,
};

struct l45_sock *l45_sock_lookup(struct sock *sk)
{
	struct l45_sock *st;

	rcu_read_lock();
	st = rhashtable_lookup(&l45_socks, &sk, l45_sock_params);
	if (st && !refcount_inc_not_zero(&st->ref))
		st = NULL;
	rcu_read_unlock();
	return st;
}

/* Poll helper: received bytes Layer 4.5 still holds for the application. */
u32 l45_sock_recv_pending(struct sock *sk)
{
	struct l45_sock *st;
	u32 n = 0;

	rcu_read_lock();
	st = rhashtable_lookup(&l45_socks, &sk, l45_sock_params);
	if (st)
		n = READ_ONCE(st->dir[L45_RECV].pend_len);
	rcu_read_unlock();
	return n;
}

void l45_dir_free(struct l45_dir *d)
{
	kvfree(d->out);
	kvfree(d->in);
	d->out = NULL;
	d->in = NULL;
	d->size = 0;
	d->pend_in = false;
	d->pend_off = 0;
	WRITE_ONCE(d->pend_len, 0);
}

/*
 * Make sure the direction has scratch of at least max(64 KiB, @size) bytes
 * (R2): the output buffer, and with @bounce (recv) the bounce buffer too.
 * Called with d->lock held.  Pending bytes, and the first @keep_in bytes
 * of the bounce buffer (a message already read from the transport),
 * survive a reallocation.  On failure the old buffers stay as they were.
 */
int l45_dir_ensure(struct l45_dir *d, u32 size, bool bounce, u32 keep_in)
{
	void *out, *in = NULL;

	size = max3(size, (u32)L45_DEFAULT_BUF, d->size);
	if (d->out && d->size >= size && (d->in || !bounce))
		return 0;
	out = kvzalloc(size, GFP_KERNEL);
	if (!out)
		return -ENOMEM;
	if (bounce || d->in) {
		in = kvzalloc(size, GFP_KERNEL);
		if (!in) {
			kvfree(out);
			return -ENOMEM;
		}
	}
	if (keep_in && d->in)
		memcpy(in, d->in, keep_in);
	if (d->pend_len) {
		memcpy(d->pend_in ? in : out, l45_pend_data(d), d->pend_len);
		d->pend_off = 0;
	}
	kvfree(d->out);
	kvfree(d->in);
	d->out = out;
	d->in = in;
	d->size = size;
	return 0;
}

static void l45_sock_free_now(struct l45_sock *st)
{
	int i;

	for (i = 0; i < st->nslots; i++)
		l45_cust_detached(st->slots[i]);
	st->nslots = 0;
	/* R2: the scratch buffers are Layer 4.5's and die with the socket. */
	l45_dir_free(&st->dir[L45_SEND]);
	l45_dir_free(&st->dir[L45_RECV]);
	mutex_destroy(&st->dir[L45_SEND].lock);
	mutex_destroy(&st->dir[L45_RECV].lock);
	mutex_destroy(&st->slot_lock);
	kfree_rcu(st, rcu);
}

static void l45_sock_free_work(struct work_struct *w)
{
	l45_sock_free_now(container_of(w, struct l45_sock, free_work));
}

void l45_sock_put(struct l45_sock *st)
{
	if (!refcount_dec_and_test(&st->ref))
		return;
	/*
	 * The last reference normally goes at close, in process context.
	 * Anywhere else, defer the kvfree()s to a worker.
	 */
	if (in_task() && !irqs_disabled() && !in_atomic())
		l45_sock_free_now(st);
	else
		queue_work(l45_wq, &st->free_work);
}

/* From proto->destroy, which may run in softirq or under the socket lock. */
void l45_sock_put_deferred(struct l45_sock *st)
{
	if (refcount_dec_and_test(&st->ref))
		queue_work(l45_wq, &st->free_work);
}

struct l45_sock *l45_sock_get_or_create(struct sock *sk)
{
	struct l45_sock *st, *old;
	int i;

	st = l45_sock_lookup(sk);
	if (st)
		return st;
	st = kzalloc(sizeof(*st), GFP_KERNEL);
	if (!st)
		return NULL;
	st->sk = sk;
	refcount_set(&st->ref, 2);	/* the table's and the caller's */
	INIT_WORK(&st->free_work, l45_sock_free_work);
	st->is_tcp = sk->sk_protocol == IPPROTO_TCP;
	mutex_init(&st->slot_lock);
	for (i = 0; i < 2; i++)
		mutex_init(&st->dir[i].lock);

	old = rhashtable_lookup_get_insert_fast(&l45_socks, &st->hnode,
						l45_sock_params);
	if (old) {
		/* Another thread tracked the socket first: use its state. */
		mutex_destroy(&st->slot_lock);
		for (i = 0; i < 2; i++)
			mutex_destroy(&st->dir[i].lock);
		kfree(st);
		if (IS_ERR(old))
			return NULL;
		return l45_sock_lookup(sk);
	}
	return st;
}

/*
 * The local address of a socket bound to INADDR_ANY is not fixed; take the
 * one the routing table picks for the peer, which is the source of the
 * socket's packets to that peer (decision, documented in README).
 */
static __be32 l45_local_addr(struct sock *sk, __be32 peer)
{
	struct inet_sock *inet = inet_sk(sk);
	struct flowi4 fl4;
	struct rtable *rt;
	__be32 saddr;

	if (inet->inet_saddr)
		return inet->inet_saddr;
	if (sk->sk_rcv_saddr)
		return sk->sk_rcv_saddr;
	if (!peer)
		return 0;
	memset(&fl4, 0, sizeof(fl4));
	fl4.daddr = peer;
	fl4.flowi4_oif = sk->sk_bound_dev_if;
	rt = ip_route_output_key(sock_net(sk), &fl4);
	if (IS_ERR(rt))
		return 0;
	saddr = fl4.saddr;
	ip_rt_put(rt);
	return saddr;
}

/*
 * Fix the socket's flow (R14) and attach the best matching modules.  The
 * peer is the connected one unless @daddr/@dport (an unconnected UDP
 * socket's first message) say otherwise.  Task names are those of the
 * current thread, the first one to use the socket (R13).  Idempotent.
 */
void l45_sock_complete_flow(struct l45_sock *st, __be32 daddr, __be16 dport)
{
	struct customization_flow *f = &st->flow;
	struct sock *sk = st->sk;
	struct inet_sock *inet = inet_sk(sk);
	u16 prio[L45_MAX_SLOTS];

	mutex_lock(&st->slot_lock);
	if (st->flow_done)
		goto out;
	if (!daddr) {
		daddr = inet->inet_daddr;
		dport = inet->inet_dport;
	}
	f->protocol = sk->sk_protocol;
	f->dest_ip = daddr;
	f->dest_port = ntohs(dport);
	f->source_ip = l45_local_addr(sk, daddr);
	f->source_port = ntohs(inet->inet_sport);
	get_task_comm(f->task_name_pid, current);
	get_task_comm(f->task_name_tgid, current->group_leader);
	/* Selected in R14 order: the slots need no sorting yet. */
	st->nslots = l45_registry_select(f, st->slots, prio, 0, false,
					 &st->seen_seq);
	smp_store_release(&st->flow_done, true);
out:
	mutex_unlock(&st->slot_lock);
}

/* Track a TCP socket at connect/accept (R14). */
void l45_track_connected(struct sock *sk)
{
	struct l45_sock *st = l45_sock_get_or_create(sk);

	if (!st)
		return;
	l45_sock_complete_flow(st, 0, 0);
	l45_sock_put(st);
}

static void l45_detach_all(struct l45_sock *st)
{
	int i;

	for (i = 0; i < st->nslots; i++)
		l45_cust_detached(st->slots[i]);
	WRITE_ONCE(st->nslots, 0);
}

/* R7: never customized again, in either direction, by any module. */
void l45_sock_set_skip(struct l45_sock *st)
{
	mutex_lock(&st->slot_lock);
	WRITE_ONCE(st->skip, true);
	l45_detach_all(st);
	mutex_unlock(&st->slot_lock);
}

/*
 * Nothing to do for this direction: flow known, no module attached and
 * none to offer, no bytes held, no scratch buffer to free.  Checked
 * without locks; a module attaching meanwhile is picked up on the next
 * message, like any module registered during a call.
 */
bool l45_sock_idle(struct l45_sock *st, int dir)
{
	struct l45_dir *d = &st->dir[dir];

	if (!smp_load_acquire(&st->flow_done))
		return false;
	if (READ_ONCE(d->pend_len) || READ_ONCE(d->out))
		return false;
	if (READ_ONCE(st->skip))
		return true;
	return !READ_ONCE(st->nslots) &&
	       READ_ONCE(l45_apply_seq) <= READ_ONCE(st->seen_seq);
}

void l45_snapshot_put(struct l45_cust **snap, int n)
{
	while (n--)
		l45_cust_put(snap[n]);
}

/*
 * Before each message: drop unregistered modules, offer apply_now modules
 * to a free slot (R14), re-sort by current priority (R14: a priority
 * change, through netlink or the module's own parameter, re-orders the
 * slots before the next message; reading the priorities each time instead
 * of a generation counter also catches writes to /sys/module/.../priority),
 * and copy the ordered slots with a reference each.  Returns how many;
 * *bufsz is the largest scratch size they request for @dir.
 */
int l45_sock_snapshot(struct l45_sock *st, int dir, struct l45_cust **snap,
		      u32 *bufsz)
{
	struct l45_cust *ord[L45_MAX_SLOTS];
	u16 prio[L45_MAX_SLOTS], oprio[L45_MAX_SLOTS];
	u32 size = L45_DEFAULT_BUF;
	int i, n = 0, m = 0;

	*bufsz = size;
	if (READ_ONCE(st->skip) || !smp_load_acquire(&st->flow_done))
		return 0;
	mutex_lock(&st->slot_lock);
	if (st->skip)
		goto out;
	for (i = 0; i < st->nslots; i++) {
		struct l45_cust *c = st->slots[i];
		bool alive;

		prio[n] = l45_cust_prio(c, &alive);
		if (!alive) {
			l45_cust_detached(c);
			continue;
		}
		st->slots[n++] = c;
	}
	WRITE_ONCE(st->nslots, n);
	if (READ_ONCE(l45_apply_seq) > st->seen_seq) {
		n = l45_registry_select(&st->flow, st->slots, prio, n, true,
					&st->seen_seq);
		WRITE_ONCE(st->nslots, n);
	}
	/* R14 order of the priorities just read, one read per module. */
	for (i = 0; i < n; i++)
		m = l45_order_insert(ord, oprio, m, L45_MAX_SLOTS,
				     st->slots[i], prio[i]);
	memcpy(st->slots, ord, m * sizeof(*ord));
	for (i = 0; i < n; i++) {
		struct l45_cust *c = st->slots[i];

		l45_cust_get(c);
		snap[i] = c;
		size = max(size, dir == L45_SEND ? c->send_size : c->recv_size);
	}
out:
	mutex_unlock(&st->slot_lock);
	*bufsz = size;
	return n;
}

/*
 * The socket is going away (close, or destroy as a safety net): take it
 * out of the table.  Returns the state with the table's reference, which
 * the caller drops with l45_sock_put(); NULL if it was not tracked.
 */
struct l45_sock *l45_sock_unlink(struct sock *sk)
{
	struct l45_sock *st;

	rcu_read_lock();
	st = rhashtable_lookup(&l45_socks, &sk, l45_sock_params);
	if (st && rhashtable_remove_fast(&l45_socks, &st->hnode,
					 l45_sock_params))
		st = NULL;	/* somebody else unlinked it */
	rcu_read_unlock();
	return st;
}

int l45_sock_init(void)
{
	int err;

	l45_wq = alloc_workqueue("layer4_5", WQ_UNBOUND, 0);
	if (!l45_wq)
		return -ENOMEM;
	err = rhashtable_init(&l45_socks, &l45_sock_params);
	if (err)
		destroy_workqueue(l45_wq);
	return err;
}

static void l45_sock_leftover(void *ptr, void *arg)
{
	struct l45_sock *st = ptr;

	/* Cannot happen: every tracked socket holds a module reference. */
	WARN_ONCE(1, "layer4_5: socket state left at exit\n");
	l45_sock_free_now(st);
}

void l45_sock_exit(void)
{
	/* Deferred frees from the destroy path, then RCU frees. */
	destroy_workqueue(l45_wq);
	rhashtable_free_and_destroy(&l45_socks, l45_sock_leftover, NULL);
	rcu_barrier();
}
