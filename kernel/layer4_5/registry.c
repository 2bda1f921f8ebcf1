// SPDX-License-Identifier: GPL-2.0
/*
 * Layer 4.5 registry: registration, ids, ordering, deprecation, the
 * revoked history, and the guard (l45_srcu) that makes unregister wait for
 * callbacks.
 */
#define pr_fmt(fmt) "layer4_5: " fmt

#include <linux/module.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/srcu.h>
#include <linux/rculist.h>
#include <linux/in.h>
#include "l45.h"

/*
 * Protects the lists, l45_reg_seq and every wrapper's list/flags.  Taken by
 * registration, unregistration and control requests, never on the data
 * path: matching a socket walks l45_match under l45_srcu (below).
 */
static DEFINE_MUTEX(l45_reg_lock);
static LIST_HEAD(l45_installed);	/* registration order */
static LIST_HEAD(l45_deprecated);	/* deprecation order */
static LIST_HEAD(l45_revoked);		/* oldest first */
static unsigned int l45_nrevoked;

/*
 * The installed modules again, in registration order, for matching new
 * sockets without a global lock (cf. net/ipv4/tcp_ulp.c).  Writers hold
 * l45_reg_lock and use list_add_tail_rcu()/list_del_rcu(); a wrapper
 * leaves it when deprecated (for good: R12) or unregistered.  Readers
 * walk it inside l45_srcu rather than plain RCU because they read each
 * candidate's priority from the module's node, which only l45_srcu
 * guards.  The same grace period then protects the wrappers: the
 * registry's reference is dropped only after unregister's
 * synchronize_srcu(), so a wrapper a reader finds on the list is alive
 * and a plain kref_get() is safe, and the last put may kfree() directly.
 */
static LIST_HEAD(l45_match);

/*
 * Sequence number of the latest registration.  Published with
 * smp_store_release() after the module is on l45_match, so a matcher
 * that read it (acquire) before walking sees every module up to it.
 */
static u64 l45_reg_seq;

/*
 * Sequence number of the latest registration that asked for apply_now.  A
 * socket whose seen_seq is older re-matches apply_now modules before its
 * next message (R14).  Written under l45_reg_lock, read locklessly.
 */
u64 l45_apply_seq;

struct l45_revoked_entry {
	struct list_head list;
	u16 id;
	time64_t ts;
};

/*
 * The guard.  Every dereference of c->node, and so every call into the
 * module, happens inside srcu_read_lock(&l45_srcu) after
 * l45_cust_alive(c) said the module is still registered.
 * unregister_customization() sets c->dead, takes the wrapper off the
 * registry's lists and then calls synchronize_srcu(): a reader that
 * started before it is waited for, a reader that starts after it sees
 * dead and backs off.  So when unregister returns no callback of the
 * module runs or will run (contract, section 1).
 *
 * Why SRCU:
 * - Callbacks may sleep (R15: copy_from_iter_full() can fault, modules
 *   may allocate); plain RCU read sections may not.
 * - srcu_read_lock() touches a per-CPU counter only.  The hand-written
 *   guard it replaces incremented one shared counter per module on every
 *   message, a cache line bouncing between CPUs.
 * - Lockdep knows SRCU: a synchronize_srcu() inside a reader (a callback
 *   unregistering a module, directly or not) is reported instead of
 *   hanging silently, and PROVE_RCU checks every l45_cust_alive() caller
 *   is inside the guard.
 * One srcu_struct serves the whole core (decision): unregistering waits
 * for every callback that was running when it started, not only its own
 * module's.  Callbacks run per message with the socket's direction mutex
 * held and are short, so that bounds rmmod by the longest callback; a
 * per-module srcu_struct would cost per-CPU memory per registration and a
 * cleanup_srcu_struct() at the last wrapper reference, which may be in a
 * worker.  l45_srcu is never used with call_srcu(): nothing to flush at
 * exit.
 */
DEFINE_SRCU(l45_srcu);

/*
 * No RCU delay needed: the last reference can only go after unregister's
 * synchronize_srcu(), when no l45_match reader can still see the wrapper.
 */
static void l45_cust_release(struct kref *ref)
{
	kfree(container_of(ref, struct l45_cust, ref));
}

void l45_cust_get(struct l45_cust *c)
{
	kref_get(&c->ref);
}

void l45_cust_put(struct l45_cust *c)
{
	kref_put(&c->ref, l45_cust_release);
}

/*
 * sock_count.  c->nsocks is the count (R11: inactive modules count too)
 * and node->sock_count its mirror in the module's node.  After
 * registration both are written only here, under c->count_lock, so the
 * mirror always ends at the latest count: with an atomic count and an
 * unlocked mirror write, a racing attach and detach could leave a stale
 * value in the node.  The node is written only while the module is
 * registered (l45_srcu).  Readers use READ_ONCE(c->nsocks).
 */
static void l45_cust_count(struct l45_cust *c, int delta)
{
	int idx, n;

	spin_lock(&c->count_lock);
	n = c->nsocks + delta;
	WRITE_ONCE(c->nsocks, n);
	idx = srcu_read_lock(&l45_srcu);
	if (l45_cust_alive(c))
		WRITE_ONCE(c->node->sock_count, clamp(n, 0, (int)U16_MAX));
	srcu_read_unlock(&l45_srcu, idx);
	spin_unlock(&c->count_lock);
}

/* A socket took c into its slots: a reference and a count. */
static void l45_cust_attached(struct l45_cust *c)
{
	kref_get(&c->ref);
	l45_cust_count(c, 1);
}

/* A socket let go of c (close, skip, or c was unregistered). */
void l45_cust_detached(struct l45_cust *c)
{
	l45_cust_count(c, -1);
	l45_cust_put(c);
}

/*
 * A module's priority, read once; a NULL cust_priority pointer means
 * priority 0 (decision).  The node must be valid (l45_srcu, or the
 * registry lock while c is listed).
 */
static u16 l45_node_prio(struct l45_cust *c)
{
	u16 *prio = c->node->cust_priority;

	return prio ? READ_ONCE(*prio) : 0;
}

/* Priority of an attached module; *alive false once it unregistered. */
u16 l45_cust_prio(struct l45_cust *c, bool *alive)
{
	u16 prio = U16_MAX;
	int idx;

	idx = srcu_read_lock(&l45_srcu);
	*alive = l45_cust_alive(c);
	if (*alive)
		prio = l45_node_prio(c);
	srcu_read_unlock(&l45_srcu, idx);
	return prio;
}

/*
 * active_mode is enforced here, not left to modules (R11; contract section
 * 4: it used to be only a convention).  A NULL active_mode pointer means
 * always active (decision).  Called inside l45_srcu, after
 * l45_cust_alive().
 */
bool l45_cust_active(struct l45_cust *c)
{
	u16 *am = c->node->active_mode;

	return !am || READ_ONCE(*am) != 0;
}

static bool l45_name_match(const char *want, const char *have)
{
	if (!strcmp(want, CUSTOMIZATION_TASK_ANY))
		return true;
	return !strncmp(want, have, CUSTOMIZATION_TASK_NAME_LEN);
}

/* R14: every field of the target matches; 0 / 256 / "*" are wildcards. */
static bool l45_flow_match(const struct customization_flow *t,
			   const struct customization_flow *f)
{
	if (t->dest_port && t->dest_port != f->dest_port)
		return false;
	if (t->source_port && t->source_port != f->source_port)
		return false;
	if (t->dest_ip && t->dest_ip != f->dest_ip)
		return false;
	if (t->source_ip && t->source_ip != f->source_ip)
		return false;
	if (t->protocol != CUSTOMIZATION_PROTO_ANY &&
	    t->protocol != f->protocol)
		return false;
	return l45_name_match(t->task_name_pid, f->task_name_pid) &&
	       l45_name_match(t->task_name_tgid, f->task_name_tgid);
}

/*
 * R14 order, the only place it is written: lowest priority value first,
 * ties by registration order.  Priorities change live (netlink PRIORITY,
 * the module's own parameter), so callers read each one once and order by
 * those snapshots: a sort never sees two values for one module.
 */
static bool l45_before(u16 pa, const struct l45_cust *a,
		       u16 pb, const struct l45_cust *b)
{
	return pa < pb || (pa == pb && a->seq < b->seq);
}

/*
 * Insert @c with priority snapshot @p into arr[0..n) / prio[0..n), kept in
 * R14 order and at most @max long: when full, the last one in order
 * (possibly @c) is left out.  Returns the new length.
 */
int l45_order_insert(struct l45_cust **arr, u16 *prio, int n, int max,
		     struct l45_cust *c, u16 p)
{
	int i = n;

	while (i > 0 && l45_before(p, c, prio[i - 1], arr[i - 1]))
		i--;
	if (i >= max)
		return n;
	if (n == max)
		n--;
	memmove(&arr[i + 1], &arr[i], (n - i) * sizeof(*arr));
	memmove(&prio[i + 1], &prio[i], (n - i) * sizeof(*prio));
	arr[i] = c;
	prio[i] = p;
	return n + 1;
}

/*
 * Pick modules for a socket.  On entry slots[0..nslots) are the modules
 * already attached; on return up to L45_MAX_SLOTS in total, the new ones
 * with a reference taken and counted, and prio[] holding the priority
 * each new one was selected with.  Candidates are the installed (never
 * the deprecated: R12) modules matching the flow, in R14 order.
 * apply_now_only restricts to modules registered with apply_now after
 * *seen_seq.  The fixed-size candidate array is bounded by the free
 * slots, so a sixth module can never overrun the five slots (contract
 * section 4).  Takes no global lock: l45_match is walked inside l45_srcu,
 * each candidate's priority read once, and registrations, deprecations
 * or priority changes running meanwhile are either seen or not, as if
 * they happened after (apply_now registrations are caught on the next
 * message through *seen_seq).
 */
int l45_registry_select(const struct customization_flow *flow,
			struct l45_cust **slots, u16 *prio, int nslots,
			bool apply_now_only, u64 *seen_seq)
{
	struct l45_cust *cand[L45_MAX_SLOTS];
	u16 cprio[L45_MAX_SLOTS];
	int free = L45_MAX_SLOTS - nslots;
	int ncand = 0, i, j, idx;
	struct l45_cust *c;
	u64 seq;

	idx = srcu_read_lock(&l45_srcu);
	seq = smp_load_acquire(&l45_reg_seq);
	list_for_each_entry_rcu(c, &l45_match, match,
				srcu_read_lock_held(&l45_srcu)) {
		if (apply_now_only && (!c->apply_now || c->seq <= *seen_seq))
			continue;
		if (!l45_flow_match(&c->target, flow))
			continue;
		for (i = 0; i < nslots; i++)
			if (slots[i] == c)
				break;
		if (i < nslots || !l45_cust_alive(c))
			continue;
		ncand = l45_order_insert(cand, cprio, ncand, free, c,
					 l45_node_prio(c));
	}
	/* Still inside l45_srcu: the registry's reference is held. */
	for (j = 0; j < ncand; j++) {
		l45_cust_attached(cand[j]);
		prio[nslots] = cprio[j];
		slots[nslots++] = cand[j];
	}
	srcu_read_unlock(&l45_srcu, idx);
	WRITE_ONCE(*seen_seq, seq);	/* read locklessly by l45_sock_idle() */
	return nslots;
}

static struct l45_cust *l45_find_id(u16 id)
{
	struct l45_cust *c;

	list_for_each_entry(c, &l45_installed, list)
		if (c->id == id)
			return c;
	list_for_each_entry(c, &l45_deprecated, list)
		if (c->id == id)
			return c;
	return NULL;
}

static struct l45_cust *l45_find_node(struct customization_node *node)
{
	struct l45_cust *c;

	list_for_each_entry(c, &l45_installed, list)
		if (c->node == node)
			return c;
	list_for_each_entry(c, &l45_deprecated, list)
		if (c->node == node)
			return c;
	return NULL;
}

int register_customization(struct customization_node *node, u16 apply_now)
{
	struct l45_cust *c;
	int err;

	if (!node)
		return -EINVAL;
	/* R1: both directions are mandatory; no_cust is how to skip one. */
	if (!node->send_function || !node->recv_function) {
		pr_err("customization %u refused: %s function is NULL (register one that sets no_cust instead)\n",
		       node->cust_id,
		       node->send_function ? "recv" : "send");
		return -EINVAL;
	}
	if (node->target_flow.protocol != IPPROTO_TCP &&
	    node->target_flow.protocol != IPPROTO_UDP &&
	    node->target_flow.protocol != CUSTOMIZATION_PROTO_ANY) {
		pr_err("customization %u refused: protocol %u is not 6, 17 or 256\n",
		       node->cust_id, node->target_flow.protocol);
		return -EINVAL;
	}
	if (node->send_buffer_size > L45_MAX_BUF ||
	    node->recv_buffer_size > L45_MAX_BUF) {
		pr_err("customization %u refused: buffer size above %u\n",
		       node->cust_id, L45_MAX_BUF);
		return -EINVAL;
	}

	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c)
		return -ENOMEM;
	kref_init(&c->ref);
	spin_lock_init(&c->count_lock);
	INIT_LIST_HEAD(&c->list);
	c->node = node;
	c->target = node->target_flow;
	/* Names are compared as C strings: make sure they are terminated. */
	c->target.task_name_pid[CUSTOMIZATION_TASK_NAME_LEN - 1] = '\0';
	c->target.task_name_tgid[CUSTOMIZATION_TASK_NAME_LEN - 1] = '\0';
	c->send_fn = node->send_function;
	c->recv_fn = node->recv_function;
	c->send_size = max_t(u32, node->send_buffer_size, L45_DEFAULT_BUF);
	c->recv_size = max_t(u32, node->recv_buffer_size, L45_DEFAULT_BUF);
	c->id = node->cust_id;
	c->apply_now = apply_now != 0;

	mutex_lock(&l45_reg_lock);
	if (l45_find_node(node)) {
		err = -EBUSY;
		pr_err("customization %u refused: node already registered\n",
		       c->id);
		goto out_free;
	}
	if (l45_find_id(c->id)) {
		err = -EEXIST;
		pr_err("customization %u refused: id already registered\n",
		       c->id);
		goto out_free;
	}
	c->seq = l45_reg_seq + 1;
	ktime_get_real_ts64(&c->reg_ts);
	node->registration_time_struct = c->reg_ts;
	memset(&node->deprecated_time_struct, 0,
	       sizeof(node->deprecated_time_struct));
	memset(&node->revoked_time_struct, 0,
	       sizeof(node->revoked_time_struct));
	node->sock_count = 0;	/* not yet visible to l45_cust_count() */
	/*
	 * The node's list_heads are the established ABI's bookkeeping fields;
	 * Layer 4.5 keeps its lists in its own wrapper (so a module's node is
	 * never reachable from a list after unregister) and leaves these
	 * initialised and empty.
	 */
	INIT_LIST_HEAD(&node->cust_list_member);
	INIT_LIST_HEAD(&node->deprecated_cust_list_member);
	INIT_LIST_HEAD(&node->revoked_cust_list_member);
	list_add_tail(&c->list, &l45_installed);
	list_add_tail_rcu(&c->match, &l45_match);
	smp_store_release(&l45_reg_seq, c->seq);	/* after the list add */
	if (c->apply_now)
		WRITE_ONCE(l45_apply_seq, c->seq);
	mutex_unlock(&l45_reg_lock);

	pr_info("customization %u registered (apply_now=%u)\n", c->id,
		c->apply_now);
	return 0;

out_free:
	mutex_unlock(&l45_reg_lock);
	kfree(c);	/* nothing else was allocated: no leak on refusal (R1) */
	return err;
}
EXPORT_SYMBOL_GPL(register_customization);

static void l45_add_revoked(u16 id, time64_t ts)
{
	struct l45_revoked_entry *e;

	/* Bounded history: the oldest entry makes room (decision). */
	if (l45_nrevoked >= L45_REVOKED_MAX) {
		e = list_first_entry(&l45_revoked, struct l45_revoked_entry,
				     list);
		list_del(&e->list);
		l45_nrevoked--;
	} else {
		e = kmalloc(sizeof(*e), GFP_KERNEL);
		if (!e) {
			pr_warn("customization %u: no memory for revoked history\n",
				id);
			return;
		}
	}
	e->id = id;
	e->ts = ts;
	list_add_tail(&e->list, &l45_revoked);
	l45_nrevoked++;
}

int unregister_customization(struct customization_node *node)
{
	struct timespec64 now;
	struct l45_cust *c;

	if (!node)
		return -EINVAL;
	mutex_lock(&l45_reg_lock);
	c = l45_find_node(node);
	if (!c) {
		mutex_unlock(&l45_reg_lock);
		return -ENOENT;
	}
	WRITE_ONCE(c->dead, true);
	if (!c->deprecated)
		list_del_rcu(&c->match);
	list_del_init(&c->list);
	ktime_get_real_ts64(&now);
	node->revoked_time_struct = now;
	l45_add_revoked(c->id, now.tv_sec);
	mutex_unlock(&l45_reg_lock);

	/*
	 * Readers that may have seen the module alive are waited for; later
	 * ones see c->dead.  Sockets keep the wrapper (not the node) and drop
	 * it on their next message or at close.
	 */
	synchronize_srcu(&l45_srcu);
	pr_info("customization %u unregistered (%d sockets released lazily)\n",
		c->id, READ_ONCE(c->nsocks));
	l45_cust_put(c);
	return 0;
}
EXPORT_SYMBOL_GPL(unregister_customization);

static unsigned int l45_list_len(struct list_head *head)
{
	struct list_head *pos;
	unsigned int n = 0;

	list_for_each(pos, head)
		n++;
	return n;
}

static struct l45_report_entry *l45_report_cust(struct l45_report_entry *e,
						struct list_head *head)
{
	struct l45_cust *c;

	list_for_each_entry(c, head, list) {
		/* On a list under the lock: the node is still registered. */
		u16 *am = c->node->active_mode;

		e->id = c->id;
		e->activated = !am || READ_ONCE(*am);
		e->count = max(READ_ONCE(c->nsocks), 0);
		e->registered = c->reg_ts.tv_sec;
		e->deprecated = c->deprecated ? c->dep_ts.tv_sec : 0;
		e->revoked = 0;
		e++;
	}
	return e;
}

/*
 * R16 CUST_REPORT: a copy of the three lists, taken at one instant under
 * the registry lock.  NULL when out of memory.  The caller formats it and
 * frees it with l45_registry_report_free().
 */
struct l45_report *l45_registry_report(void)
{
	struct l45_revoked_entry *r;
	struct l45_report_entry *e;
	struct l45_report *rep;
	unsigned int n[L45_REP_LISTS];

	mutex_lock(&l45_reg_lock);
	n[L45_REP_INSTALLED] = l45_list_len(&l45_installed);
	n[L45_REP_DEPRECATED] = l45_list_len(&l45_deprecated);
	n[L45_REP_REVOKED] = l45_nrevoked;
	rep = kvzalloc(struct_size(rep, e, n[L45_REP_INSTALLED] +
				   n[L45_REP_DEPRECATED] + l45_nrevoked),
		       GFP_KERNEL);
	if (!rep)
		goto out;
	memcpy(rep->n, n, sizeof(n));
	e = rep->e;
	rep->list[L45_REP_INSTALLED] = e;
	e = l45_report_cust(e, &l45_installed);
	rep->list[L45_REP_DEPRECATED] = e;
	e = l45_report_cust(e, &l45_deprecated);
	rep->list[L45_REP_REVOKED] = e;
	list_for_each_entry(r, &l45_revoked, list) {
		e->id = r->id;
		e->revoked = r->ts;
		e++;
	}
out:
	mutex_unlock(&l45_reg_lock);
	return rep;
}

void l45_registry_report_free(struct l45_report *rep)
{
	kvfree(rep);
}

/* R12.  Returns 1, or 0 when the id is unknown or already deprecated. */
int l45_registry_deprecate(u16 id)
{
	struct l45_cust *c;
	int ret = 0;

	mutex_lock(&l45_reg_lock);
	list_for_each_entry(c, &l45_installed, list) {
		if (c->id != id)
			continue;
		c->deprecated = true;
		ktime_get_real_ts64(&c->dep_ts);
		c->node->deprecated_time_struct = c->dep_ts;
		/*
		 * Matchers already on c may still attach it (as if they ran
		 * before the deprecation); later ones do not see it.
		 */
		list_del_rcu(&c->match);
		list_move_tail(&c->list, &l45_deprecated);
		ret = 1;
		break;
	}
	mutex_unlock(&l45_reg_lock);
	return ret;
}

/* R11: takes effect on the next message (active_mode is read per message). */
int l45_registry_toggle(u16 id, u16 on)
{
	struct l45_cust *c;
	int ret = 0;

	mutex_lock(&l45_reg_lock);
	c = l45_find_id(id);
	if (c && c->node->active_mode) {
		WRITE_ONCE(*c->node->active_mode, on);
		ret = 1;
	}
	mutex_unlock(&l45_reg_lock);
	return ret;
}

/* R14: sockets re-sort their slots before each message, see sock.c. */
int l45_registry_priority(u16 id, u16 prio)
{
	struct l45_cust *c;
	int ret = 0;

	mutex_lock(&l45_reg_lock);
	c = l45_find_id(id);
	if (c && c->node->cust_priority) {
		WRITE_ONCE(*c->node->cust_priority, prio);
		ret = 1;
	}
	mutex_unlock(&l45_reg_lock);
	return ret;
}

/*
 * R16 CHALLENGE.  -ENOENT for an unknown id, -EOPNOTSUPP when the module
 * has no challenge_function: both answered with an error, never a NULL
 * dereference (contract section 4).  The call runs inside l45_srcu and
 * outside the registry lock, so it may sleep.
 */
int l45_registry_challenge(u16 id, char *resp, char *iv, char *challenge)
{
	customization_challenge_fn fn = NULL;
	struct l45_cust *c;
	int err = 0;
	int idx;

	/*
	 * Entered before the lookup: a module found registered under the
	 * lock cannot finish unregistering until srcu_read_unlock().
	 */
	idx = srcu_read_lock(&l45_srcu);
	mutex_lock(&l45_reg_lock);
	c = l45_find_id(id);
	if (!c)
		err = -ENOENT;
	else if (!c->node->challenge_function)
		err = -EOPNOTSUPP;
	else
		fn = c->node->challenge_function;
	mutex_unlock(&l45_reg_lock);
	if (fn)
		fn(resp, iv, challenge);
	srcu_read_unlock(&l45_srcu, idx);
	return err;
}

/* Core unload: customization modules depend on us, so all are gone. */
void l45_registry_exit(void)
{
	struct l45_revoked_entry *e, *tmp;

	WARN_ON(!list_empty(&l45_installed) || !list_empty(&l45_deprecated) ||
		!list_empty(&l45_match));
	list_for_each_entry_safe(e, tmp, &l45_revoked, list) {
		list_del(&e->list);
		kfree(e);
	}
	l45_nrevoked = 0;
}
