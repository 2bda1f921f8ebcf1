/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layer 4.5 internals shared by the core's files.
 *
 * Lock order (outer first; a path may skip levels):
 *	l45_dir.lock (per socket, per direction; may be held across the
 *		      transport call and across module callbacks)
 *	  -> sk_lock (taken by TCP/UDP themselves; connect tracks the
 *		      socket under it)
 *	    -> l45_sock.slot_lock (per socket: slots, flow completion)
 *	      -> l45_cust.count_lock (spinlock: a module's socket count;
 *		 nothing inside but an l45_srcu read section)
 *	l45_reg_lock (registry; registration and control requests only,
 *		      never taken on the data path)
 * l45_srcu read sections (callbacks, matching, reading a module's node)
 * may be entered under any of these; those inside the mutexes may sleep.
 * synchronize_srcu() (unregister) runs with no lock held.
 * No spinlock is ever held across a module callback or a transport call.
 */
#ifndef _L45_H
#define _L45_H

#ifndef pr_fmt
#define pr_fmt(fmt) "layer4_5: " fmt
#endif

#include <linux/types.h>
#include <linux/kref.h>
#include <linux/mutex.h>
#include <linux/refcount.h>
#include <linux/rhashtable.h>
#include <linux/spinlock.h>
#include <linux/srcu.h>
#include <linux/workqueue.h>
#include <net/sock.h>
#include <layer4_5/customization.h>
#include "compat.h"

#define L45_MAX_SLOTS		5	/* modules per socket (R14) */
#define L45_DEFAULT_BUF		(64 * 1024)	/* minimum scratch (R2) */
#define L45_MAX_BUF		(64 * 1024 * 1024)	/* sanity cap */
#define L45_REVOKED_MAX		256	/* revoked history entries kept */

enum { L45_SEND = 0, L45_RECV = 1 };

/*
 * Layer 4.5's own refcounted wrapper around a registered
 * customization_node.  Sockets reference the wrapper, never the node: once
 * unregister_customization() returned, the node (and the module text
 * behind its function pointers) is never touched again.
 */
struct l45_cust {
	struct list_head list;		/* installed or deprecated; reg lock */
	struct list_head match;		/* l45_match while installed (RCU) */
	struct kref ref;		/* registry + sockets + snapshots */
	struct customization_node *node;	/* l45_srcu, or reg lock if listed */
	struct customization_flow target;	/* copied at registration */
	customization_fn send_fn;
	customization_fn recv_fn;
	u32 send_size;			/* effective scratch sizes */
	u32 recv_size;
	u64 seq;			/* registration order */
	u16 id;
	bool apply_now;
	bool deprecated;		/* reg lock */
	bool dead;			/* unregistered; l45_cust_alive() */
	spinlock_t count_lock;		/* nsocks and node->sock_count */
	int nsocks;			/* sockets attached; count_lock */
	struct timespec64 reg_ts;
	struct timespec64 dep_ts;
};

/*
 * Per socket, per direction.  Everything below is protected by 'lock';
 * only pend_len (poll) and out (l45_sock_idle) are also read without it.
 */
struct l45_dir {
	struct mutex lock;
	/*
	 * Scratch buffers of 'size' bytes each (R2).  The modules of a socket
	 * are alternatives (R8): each is offered the original message and
	 * writes its output into 'out' (cb->buf); the first one that does
	 * not decline decides.  Recv also has 'in', the bounce buffer the
	 * transport fills: the message every module reads (through a kvec
	 * iterator) while writing 'out', and what is delivered when all
	 * decline.  Send has no 'in' (modules read the application's
	 * iterator), so 'in' is NULL there.  'out' != NULL means allocated.
	 */
	void *out;
	void *in;
	u32 size;
	/*
	 * Bytes not yet handed on: TCP recv rest (in 'in' if the message
	 * passed unmodified, else in 'out'), unsent TCP send rest (in 'out').
	 */
	bool pend_in;
	u32 pend_off;
	u32 pend_len;			/* READ_ONCE from poll */
	struct customization_buffer cb;	/* what modules are handed; reset
					 * before every callback */
};

/* Where the pending bytes start; d->lock held and d->pend_len != 0. */
static inline void *l45_pend_data(struct l45_dir *d)
{
	return (d->pend_in ? d->in : d->out) + d->pend_off;
}

struct l45_sock {
	struct rhash_head hnode;
	struct sock *sk;		/* hash key */
	refcount_t ref;
	struct rcu_head rcu;
	struct work_struct free_work;
	bool is_tcp;
	bool flow_done;			/* flow known, modules matched */
	bool skip;			/* set_cust_to_skip seen (R7) */
	struct mutex slot_lock;
	struct l45_cust *slots[L45_MAX_SLOTS];
	int nslots;
	u64 seen_seq;			/* registry seq at last (re)match;
					 * slot_lock, READ_ONCE outside */
	struct customization_flow flow;
	struct l45_dir dir[2];
};

/*
 * A copy of the registry for CUST_REPORT (R16), taken under the registry
 * lock by l45_registry_report() and freed with l45_registry_report_free().
 * Plain data: the control interface formats it without touching the
 * registry.
 */
enum {
	L45_REP_INSTALLED,	/* registration order */
	L45_REP_DEPRECATED,	/* deprecation order */
	L45_REP_REVOKED,	/* oldest first, the last L45_REVOKED_MAX */
	L45_REP_LISTS
};

struct l45_report_entry {
	time64_t registered;	/* installed, deprecated */
	time64_t deprecated;	/* deprecated */
	time64_t revoked;	/* revoked */
	unsigned int count;	/* sockets attached now */
	u16 id;
	bool activated;
};

struct l45_report {
	struct l45_report_entry *list[L45_REP_LISTS];	/* into e[] */
	unsigned int n[L45_REP_LISTS];
	struct l45_report_entry e[];
};

/* registry.c */
extern u64 l45_apply_seq;
extern struct srcu_struct l45_srcu;

/*
 * Inside srcu_read_lock(&l45_srcu): true if @c is still registered, and
 * then c->node (and the module code behind it) stays valid until
 * srcu_read_unlock().  See registry.c for the guard.
 */
static inline bool l45_cust_alive(struct l45_cust *c)
{
	RCU_LOCKDEP_WARN(!srcu_read_lock_held(&l45_srcu),
			 "layer4_5: module node used outside l45_srcu");
	return !READ_ONCE(c->dead);
}

void l45_cust_get(struct l45_cust *c);
void l45_cust_put(struct l45_cust *c);
u16 l45_cust_prio(struct l45_cust *c, bool *alive);
bool l45_cust_active(struct l45_cust *c);
void l45_cust_detached(struct l45_cust *c);
int l45_order_insert(struct l45_cust **arr, u16 *prio, int n, int max,
		     struct l45_cust *c, u16 p);
int l45_registry_select(const struct customization_flow *flow,
			struct l45_cust **slots, u16 *prio, int nslots,
			bool apply_now_only, u64 *seen_seq);
void l45_registry_exit(void);
struct l45_report *l45_registry_report(void);
void l45_registry_report_free(struct l45_report *rep);
int l45_registry_deprecate(u16 id);
int l45_registry_toggle(u16 id, u16 on);
int l45_registry_priority(u16 id, u16 prio);
int l45_registry_challenge(u16 id, char *resp, char *iv, char *challenge);

/* sock.c */
int l45_sock_init(void);
void l45_sock_exit(void);
struct l45_sock *l45_sock_lookup(struct sock *sk);
struct l45_sock *l45_sock_get_or_create(struct sock *sk);
void l45_sock_put(struct l45_sock *st);
void l45_sock_put_deferred(struct l45_sock *st);
void l45_sock_complete_flow(struct l45_sock *st, __be32 daddr, __be16 dport);
int l45_sock_snapshot(struct l45_sock *st, int dir, struct l45_cust **snap,
		      u32 *bufsz);
void l45_snapshot_put(struct l45_cust **snap, int n);
bool l45_sock_idle(struct l45_sock *st, int dir);
void l45_sock_set_skip(struct l45_sock *st);
struct l45_sock *l45_sock_unlink(struct sock *sk);
u32 l45_sock_recv_pending(struct sock *sk);
int l45_dir_ensure(struct l45_dir *d, u32 size, bool bounce, u32 keep_in);
void l45_dir_free(struct l45_dir *d);
void l45_track_connected(struct sock *sk);

/* datapath.c */
int l45_sendmsg(struct sock *sk, struct msghdr *msg, size_t len,
		int (*orig)(struct sock *, struct msghdr *, size_t));
int l45_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, int flags,
		int *addr_len, l45_recvmsg_fn orig);
void l45_close_flush(struct sock *sk,
		     int (*orig)(struct sock *, struct msghdr *, size_t));

/* proto.c */
int l45_proto_init(void);
void l45_proto_exit(void);

/* netlink.c */
int l45_netlink_init(void);
void l45_netlink_exit(void);

#endif /* _L45_H */
