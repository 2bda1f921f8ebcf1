// SPDX-License-Identifier: GPL-2.0
/*
 * Layer 4.5 control interface (R16): a netlink socket, protocol 25, in the
 * initial network namespace.  One ASCII command per netlink message, one
 * JSON object back to the sender.
 */
#define pr_fmt(fmt) "layer4_5: " fmt

#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/ctype.h>
#include <linux/string.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <net/net_namespace.h>
#include <net/netlink.h>
#include <net/sock.h>
#include "l45.h"

#define L45_NETLINK_PROTO	25
#define L45_NL_MAX_REQ		256	/* longer requests are refused */
#define L45_NL_MAX_TOKENS	6
#define L45_CHALLENGE_RESP	1024	/* response buffer handed to modules */

static struct sock *l45_nl_sk;

/* JSON reply builder. */
struct l45_sb {
	char *buf;
	size_t len;
	size_t cap;
	bool failed;
};

/*
 * Replies are built in a buffer that grows as needed, so a report is never
 * cut (contract section 4: replies used to be truncated at 1 KiB).  If
 * memory runs out the whole reply is replaced by a short error object:
 * the reply is always one complete JSON object.
 */
static __printf(2, 3) void l45_sb_printf(struct l45_sb *sb,
					  const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sb->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		sb->failed = true;
		return;
	}
	if (sb->len + n + 1 > sb->cap) {
		size_t cap = max3(sb->cap * 2, sb->len + n + 1, (size_t)256);
		char *nb = kvmalloc(cap, GFP_KERNEL);

		if (!nb) {
			sb->failed = true;
			return;
		}
		if (sb->len)
			memcpy(nb, sb->buf, sb->len);
		kvfree(sb->buf);
		sb->buf = nb;
		sb->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
	va_end(ap);
	sb->len += n;
}

/* A JSON string from arbitrary bytes (a module's challenge response). */
static void l45_sb_json_str(struct l45_sb *sb, const char *s)
{
	l45_sb_printf(sb, "\"");
	for (; *s; s++) {
		unsigned char ch = *s;

		if (ch == '"' || ch == '\\')
			l45_sb_printf(sb, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			l45_sb_printf(sb, "\\u%04x", ch);
		else
			l45_sb_printf(sb, "%c", ch);
	}
	l45_sb_printf(sb, "\"");
}

/*
 * CUST_REPORT (R16) from the registry's snapshot.  ts: registration time
 * for installed modules, deprecation time for deprecated ones,
 * unregistration time for revoked ones (decision).  Count = sockets
 * attached now.
 */
static void l45_sb_report(struct l45_sb *sb)
{
	static const char * const name[L45_REP_LISTS] = {
		[L45_REP_INSTALLED] = "Installed",
		[L45_REP_DEPRECATED] = "Deprecated",
		[L45_REP_REVOKED] = "Revoked",
	};
	struct l45_report *rep = l45_registry_report();
	unsigned int k, i;

	if (!rep) {
		sb->failed = true;	/* replied as out of memory */
		return;
	}
	for (k = 0; k < L45_REP_LISTS; k++) {
		l45_sb_printf(sb, "%s\"%s\":[", k ? "]," : "{", name[k]);
		for (i = 0; i < rep->n[k]; i++) {
			const struct l45_report_entry *e = &rep->list[k][i];
			const char *sep = i ? "," : "";

			if (k == L45_REP_REVOKED) {
				l45_sb_printf(sb, "%s{\"ID\":%u,\"ts\":%lld}", sep,
					      e->id, (long long)e->revoked);
				continue;
			}
			l45_sb_printf(sb, "%s{\"ID\":%u,\"Activated\":%u,\"Count\":%u,\"ts\":%lld}",
				      sep, e->id, e->activated ? 1 : 0, e->count,
				      (long long)(k == L45_REP_DEPRECATED ?
						  e->deprecated : e->registered));
		}
	}
	l45_sb_printf(sb, "]}");
	l45_registry_report_free(rep);
}

static void l45_nl_send(const struct nlmsghdr *req, u32 portid,
			const char *s, size_t len)
{
	struct nlmsghdr *nlh;
	struct sk_buff *skb;

	/* The payload is the JSON text followed by one NUL byte. */
	skb = nlmsg_new(len + 1, GFP_KERNEL);
	if (!skb)
		return;
	nlh = nlmsg_put(skb, 0, req->nlmsg_seq, req->nlmsg_type, len + 1, 0);
	if (!nlh) {
		kfree_skb(skb);
		return;
	}
	memcpy(nlmsg_data(nlh), s, len);
	((char *)nlmsg_data(nlh))[len] = '\0';
	/* nlmsg_unicast consumes the skb, also on error. */
	nlmsg_unicast(l45_nl_sk, skb, portid);
}

static void l45_nl_reply_sb(const struct nlmsghdr *req, u32 portid,
			    struct l45_sb *sb)
{
	static const char oom[] = "{\"ERROR\":\"out of memory\"}";

	if (sb->failed || !sb->buf)
		l45_nl_send(req, portid, oom, sizeof(oom) - 1);
	else
		l45_nl_send(req, portid, sb->buf, sb->len);
	kvfree(sb->buf);
}

/* Error replies come from fixed strings only: never uninitialised memory. */
static void l45_nl_error(const struct nlmsghdr *req, u32 portid,
			 const char *why)
{
	struct l45_sb sb = {};

	l45_sb_printf(&sb, "{\"ERROR\":\"%s\"}", why);
	l45_nl_reply_sb(req, portid, &sb);
}

static bool l45_is_hex(const char *s)
{
	size_t n = strlen(s);

	if (!n || n % 2)
		return false;
	for (; *s; s++)
		if (!isxdigit(*s))
			return false;
	return true;
}

static void l45_nl_challenge(const struct nlmsghdr *req, u32 portid, u16 id,
			     const char *iv_hex, const char *ch_hex)
{
	struct l45_sb sb = {};
	char *resp, *iv, *chal;
	int err;

	if (!l45_is_hex(iv_hex) || !l45_is_hex(ch_hex)) {
		l45_sb_printf(&sb, "{\"ID\":%u,\"ERROR\":\"iv and challenge must be hex\"}",
			      id);
		l45_nl_reply_sb(req, portid, &sb);
		return;
	}
	/*
	 * The module gets writable, NUL-terminated copies of the hex strings
	 * as sent, and a zeroed response buffer of L45_CHALLENGE_RESP bytes
	 * into which it writes a NUL-terminated string (decision).
	 */
	resp = kzalloc(L45_CHALLENGE_RESP, GFP_KERNEL);
	iv = kstrdup(iv_hex, GFP_KERNEL);
	chal = kstrdup(ch_hex, GFP_KERNEL);
	if (!resp || !iv || !chal) {
		l45_sb_printf(&sb, "{\"ID\":%u,\"ERROR\":\"out of memory\"}", id);
		goto out;
	}
	err = l45_registry_challenge(id, resp, iv, chal);
	if (err == -ENOENT) {
		l45_sb_printf(&sb, "{\"ID\":%u,\"ERROR\":\"unknown id\"}", id);
		goto out;
	}
	if (err) {
		l45_sb_printf(&sb, "{\"ID\":%u,\"ERROR\":\"module has no challenge function\"}",
			      id);
		goto out;
	}
	resp[L45_CHALLENGE_RESP - 1] = '\0';
	l45_sb_printf(&sb, "{\"ID\":%u,\"IV\":\"%s\",\"Response\":", id, iv_hex);
	l45_sb_json_str(&sb, resp);
	l45_sb_printf(&sb, "}");
out:
	kfree(resp);
	kfree(iv);
	kfree(chal);
	l45_nl_reply_sb(req, portid, &sb);
}

/*
 * Requests: exactly the contract's table.  Parsing is bounded: the request
 * is copied into a fixed buffer after a length check, must be printable
 * ASCII (trailing NULs and whitespace are ignored), and is split into at
 * most L45_NL_MAX_TOKENS tokens.  Every numeric field must parse as a
 * decimal u16.  CUST_REPORT is also accepted as "CUST_REPORT END"
 * (decision).
 */
static void l45_nl_handle(const struct nlmsghdr *nlh, u32 portid,
			  bool allowed)
{
	char req[L45_NL_MAX_REQ + 1];
	char *tok[L45_NL_MAX_TOKENS];
	int plen = nlmsg_len(nlh);
	struct l45_sb sb = {};
	char *p, *t;
	int ntok = 0, i;
	u16 id, val;

	if (!allowed) {
		l45_nl_error(nlh, portid, "CAP_NET_ADMIN required");
		return;
	}
	if (plen > L45_NL_MAX_REQ) {
		l45_nl_error(nlh, portid, "request too long");
		return;
	}
	memcpy(req, nlmsg_data(nlh), plen);
	while (plen > 0 && req[plen - 1] == '\0')
		plen--;
	req[plen] = '\0';
	for (i = 0; i < plen; i++) {
		if (!isprint(req[i]) && !isspace(req[i])) {
			l45_nl_error(nlh, portid, "request is not printable ASCII");
			return;
		}
	}
	p = req;
	while ((t = strsep(&p, " \t\r\n")) != NULL) {
		if (!*t)
			continue;
		if (ntok == L45_NL_MAX_TOKENS) {
			l45_nl_error(nlh, portid, "too many fields");
			return;
		}
		tok[ntok++] = t;
	}
	if (!ntok) {
		l45_nl_error(nlh, portid, "empty request");
		return;
	}

	if (!strcmp(tok[0], "CUST_REPORT")) {
		if (ntok > 2 || (ntok == 2 && strcmp(tok[1], "END"))) {
			l45_nl_error(nlh, portid, "malformed CUST_REPORT request");
			return;
		}
		l45_sb_report(&sb);
		l45_nl_reply_sb(nlh, portid, &sb);
		return;
	}

	if (strcmp(tok[0], "DEPRECATE") && strcmp(tok[0], "TOGGLE") &&
	    strcmp(tok[0], "PRIORITY") && strcmp(tok[0], "CHALLENGE")) {
		l45_nl_error(nlh, portid, "unknown command");
		return;
	}
	if (strcmp(tok[ntok - 1], "END")) {
		l45_nl_error(nlh, portid, "unterminated request (missing END)");
		return;
	}
	if (ntok < 3 || kstrtou16(tok[1], 10, &id)) {
		l45_nl_error(nlh, portid, "malformed request: bad id");
		return;
	}

	if (!strcmp(tok[0], "DEPRECATE")) {
		if (ntok != 3) {
			l45_nl_error(nlh, portid, "malformed DEPRECATE request");
			return;
		}
		l45_sb_printf(&sb, "{\"ID\":%u,\"Result\":%d}", id,
			      l45_registry_deprecate(id));
	} else if (!strcmp(tok[0], "TOGGLE")) {
		if (ntok != 4 || kstrtou16(tok[2], 10, &val) || val > 1) {
			l45_nl_error(nlh, portid, "malformed TOGGLE request");
			return;
		}
		l45_sb_printf(&sb, "{\"ID\":%u,\"Result\":%d}", id,
			      l45_registry_toggle(id, val));
	} else if (!strcmp(tok[0], "PRIORITY")) {
		if (ntok != 4 || kstrtou16(tok[2], 10, &val)) {
			l45_nl_error(nlh, portid, "malformed PRIORITY request");
			return;
		}
		l45_sb_printf(&sb, "{\"ID\":%u,\"Result\":%d}", id,
			      l45_registry_priority(id, val));
	} else {
		if (ntok != 5) {
			l45_nl_error(nlh, portid, "malformed CHALLENGE request");
			return;
		}
		l45_nl_challenge(nlh, portid, id, tok[2], tok[3]);
		return;
	}
	l45_nl_reply_sb(nlh, portid, &sb);
}

/* Runs in the sending process's context: may sleep. */
static void l45_nl_rcv(struct sk_buff *skb)
{
	bool allowed = netlink_capable(skb, CAP_NET_ADMIN);
	u32 portid = NETLINK_CB(skb).portid;

	while (skb->len >= NLMSG_HDRLEN) {
		struct nlmsghdr *nlh = nlmsg_hdr(skb);
		u32 msglen;

		if (nlh->nlmsg_len < NLMSG_HDRLEN || skb->len < nlh->nlmsg_len)
			return;
		l45_nl_handle(nlh, portid, allowed);
		msglen = NLMSG_ALIGN(nlh->nlmsg_len);
		if (msglen > skb->len)
			msglen = skb->len;
		skb_pull(skb, msglen);
	}
}

int l45_netlink_init(void)
{
	struct netlink_kernel_cfg cfg = {
		.input = l45_nl_rcv,
	};

	l45_nl_sk = netlink_kernel_create(&init_net, L45_NETLINK_PROTO, &cfg);
	if (!l45_nl_sk) {
		pr_err("netlink protocol %d is taken\n", L45_NETLINK_PROTO);
		return -EBUSY;
	}
	return 0;
}

void l45_netlink_exit(void)
{
	netlink_kernel_release(l45_nl_sk);
}
