// SPDX-License-Identifier: GPL-2.0
/*
 * segments: reads the message the way R9 demands, in small pieces with
 * copy_from_iter_full(), iov_iter_revert() and iov_iter_advance(), checks
 * that the pieces agree, then appends a tag (send) or strips it (recv).
 * It leaves src_iter wherever it ended up: Layer 4.5 must not care.  A
 * mismatch fails the call with EBADMSG, which a test will notice.
 */
#define L45C_ID 121
#include "l45cust.h"

static uint chunk = 7;
module_param(chunk, uint, 0444);
MODULE_PARM_DESC(chunk, "bytes per read step");
static char *tag = "SEG";
module_param(tag, charp, 0444);

static ssize_t seg_read(struct customization_buffer *cb, size_t n)
{
	size_t step = max_t(size_t, chunk, 1);
	size_t off = 0, k, half = n / 2;
	u8 probe[16];

	if (n > cb->buf_size)
		return -EMSGSIZE;
	/* Peek at the start, then go back. */
	k = min_t(size_t, n, sizeof(probe));
	if (!copy_from_iter_full(probe, k, cb->src_iter))
		return -EFAULT;
	iov_iter_revert(cb->src_iter, k);
	/* The whole message in small steps. */
	while (off < n) {
		k = min(step, n - off);
		if (!copy_from_iter_full(cb->buf + off, k, cb->src_iter))
			return -EFAULT;
		off += k;
	}
	if (memcmp(probe, cb->buf, min_t(size_t, n, sizeof(probe))))
		return -EBADMSG;
	/* Back to the start, skip half, re-read a piece of the second half. */
	iov_iter_revert(cb->src_iter, n);
	iov_iter_advance(cb->src_iter, half);
	k = min_t(size_t, n - half, sizeof(probe));
	if (!copy_from_iter_full(probe, k, cb->src_iter))
		return -EFAULT;
	if (memcmp(probe, cb->buf + half, k))
		return -EBADMSG;
	return n;
}

static void seg_send(struct customization_buffer *cb,
		     struct customization_flow *flow)
{
	size_t tl = strlen(tag);
	ssize_t n;

	if (!on_send || cb->length + tl > cb->buf_size) {
		cb->no_cust = true;
		return;
	}
	n = seg_read(cb, cb->length);
	if (n < 0) {
		cb->copy_length = n;
		return;
	}
	memcpy(cb->buf + n, tag, tl);
	cb->copy_length = n + tl;
}

static void seg_recv(struct customization_buffer *cb,
		     struct customization_flow *flow)
{
	size_t tl = strlen(tag);
	ssize_t n;

	if (!on_recv) {
		cb->no_cust = true;
		return;
	}
	n = seg_read(cb, cb->recv_return);
	if (n < 0) {
		cb->copy_length = n;
		return;
	}
	if (tl && n > tl && !memcmp(cb->buf + n - tl, tag, tl))
		cb->copy_length = n - tl;
	else
		cb->no_cust = true;
}

L45C_MODULE(seg_send, seg_recv, NULL,
	    "Layer 4.5 test: multi-step iterator reads");
