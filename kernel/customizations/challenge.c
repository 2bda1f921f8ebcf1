// SPDX-License-Identifier: GPL-2.0
/*
 * challenge: implements challenge_function for R16's CHALLENGE command.
 * iv and challenge arrive as hex strings; the response is the hex string
 * of challenge[i] ^ iv[i % len(iv)] ^ key, so a test can compute it;
 * "calls" counts the calls, so a test sees the function ran whatever it
 * was given.  Traffic is left alone.
 */
#define L45C_ID 122
#include "l45cust.h"
/* hex2bin()/bin2hex(): linux/hex.h on newer kernels, kernel.h before. */
#if __has_include(<linux/hex.h>)
#include <linux/hex.h>
#endif

static int key = 0x5a;
module_param(key, int, 0444);
MODULE_PARM_DESC(key, "byte mixed into the response");

L45C_COUNTER(calls);

/* Responses fit Layer 4.5's 1024-byte buffer: requests are < 256 bytes. */
#define CH_MAX 128

static void challenge_fn(char *response, char *iv, char *challenge)
{
	u8 ivb[CH_MAX], chb[CH_MAX];
	size_t ivn = strlen(iv) / 2, chn = strlen(challenge) / 2, i;

	atomic_inc(&calls);
	response[0] = '\0';
	if (!ivn || ivn > CH_MAX || chn > CH_MAX ||
	    hex2bin(ivb, iv, ivn) || hex2bin(chb, challenge, chn))
		return;
	for (i = 0; i < chn; i++)
		chb[i] ^= ivb[i % ivn] ^ (u8)key;
	bin2hex(response, chb, chn);
	response[2 * chn] = '\0';
}

static void challenge_pass(struct customization_buffer *cb,
			   struct customization_flow *flow)
{
	cb->no_cust = true;
}

L45C_MODULE(challenge_pass, challenge_pass, challenge_fn,
	    "Layer 4.5 test: challenge function");
