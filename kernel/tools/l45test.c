// SPDX-License-Identifier: GPL-2.0
/*
 * l45test: small TCP/UDP peers for trying Layer 4.5 by hand or from a
 * guest script.  Prints one line per call, easy to grep:
 *	SEND ret=<n> errno=<e>
 *	RECV ret=<n> errno=<e> trunc=<0|1> data=<bytes, non-printables as .>
 *
 *	l45test echo udp|tcp PORT [bufsize]
 *		echo server (forever; TCP: one connection after the other)
 *	l45test sink tcp PORT
 *		read connections to EOF, count pattern bytes (-S), 'T' tag
 *		bytes and bytes that break the pattern
 *	l45test accept-nb tcp PORT
 *		non-blocking accept on an empty listener (must be EAGAIN)
 *	l45test client udp|tcp IP PORT [options] MSG...
 *		for each MSG: send it, then receive (unless -n)
 *	options:
 *		-b N	receive buffer size (default 65536)
 *		-k N	receive calls per message (default 1)
 *		-w N	send MSG as a writev of N segments
 *		-v N	receive with a readv of N segments
 *		-N	non-blocking socket
 *		-t MS	SO_RCVTIMEO
 *		-u	UDP: sendto without connect
 *		-n	do not receive
 *		-W	MSG_WAITALL
 *		-T NAME	run in a thread named NAME (comm differs from process)
 *		-s MS	sleep before each receive
 *		-r N	repeat the list of messages N times
 *		-q	quiet: print only failures and a summary
 *		-S N	send N-byte messages of a pattern instead of MSG
 *		-P	poll() for POLLIN before each receive (timeout -t or 1s)
 *		-z MS	sleep before closing the socket
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int bufsize = 65536, reads = 1, wsegs = 1, rsegs = 1, nonblock;
static int timeout_ms, unconnected, noreply, waitall, sleep_ms;
static int repeat = 1, quiet, failures, pattern_size, use_poll, sent_ok;
static char *pattern;
static int linger_ms;
static const char *thread_name;
static int tcp;
static struct sockaddr_in peer;
static char **msgs;
static int nmsgs;

static void show(const char *what, ssize_t ret, int err, int trunc,
		 const char *data, ssize_t n)
{
	ssize_t i;

	if (ret < 0)
		failures++;
	if (quiet && ret >= 0)
		return;
	printf("%s ret=%zd errno=%d", what, ret, ret < 0 ? err : 0);
	if (trunc >= 0)
		printf(" trunc=%d", trunc);
	if (data) {
		printf(" data=");
		for (i = 0; i < n; i++)
			putchar(data[i] >= 32 && data[i] < 127 ? data[i] : '.');
	}
	putchar('\n');
	fflush(stdout);
}

static int echo(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(port) };
	char *buf = malloc(bufsize);
	int one = 1, fd;

	fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    (tcp && listen(fd, 16))) {
		perror("bind/listen");
		return 1;
	}
	printf("READY\n");
	fflush(stdout);
	for (;;) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n;

		if (!tcp) {
			n = recvfrom(fd, buf, bufsize, 0,
				     (struct sockaddr *)&from, &fl);
			show("RECV", n, errno, -1, buf, n > 0 ? n : 0);
			if (n >= 0)
				show("SEND", sendto(fd, buf, n, 0,
					(struct sockaddr *)&from, fl), errno,
				     -1, NULL, 0);
			continue;
		}
		int c = accept(fd, NULL, NULL);

		if (c < 0)
			continue;
		while ((n = read(c, buf, bufsize)) > 0) {
			show("RECV", n, errno, -1, buf, n);
			show("SEND", write(c, buf, n), errno, -1, NULL, 0);
		}
		show("EOF", n, errno, -1, NULL, 0);
		close(c);
	}
}

static void *client(void *arg)
{
	char *buf = malloc(bufsize);
	int fd, i, j;

	(void)arg;
	if (thread_name)
		prctl(PR_SET_NAME, thread_name);
	fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (timeout_ms) {
		struct timeval tv = { timeout_ms / 1000,
				      (timeout_ms % 1000) * 1000 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	if ((tcp || !unconnected) &&
	    connect(fd, (struct sockaddr *)&peer, sizeof(peer))) {
		show("CONNECT", -1, errno, -1, NULL, 0);
		exit(1);
	}
	if (nonblock)
		fcntl(fd, F_SETFL, O_NONBLOCK);
	for (i = 0; i < nmsgs * repeat; i++) {
		char *msg = pattern ? pattern : msgs[i % nmsgs];
		size_t len = pattern ? (size_t)pattern_size : strlen(msg);
		size_t per = len / wsegs, off = 0;
		struct iovec iov[64];
		struct msghdr m = { 0 };
		ssize_t r;

		for (j = 0; j < wsegs && j < 64; j++) {
			iov[j].iov_base = msg + off;
			iov[j].iov_len = j == wsegs - 1 ? len - off : per;
			off += iov[j].iov_len;
		}
		m.msg_iov = iov;
		m.msg_iovlen = j;
		if (unconnected && !tcp) {
			m.msg_name = &peer;
			m.msg_namelen = sizeof(peer);
		}
		r = sendmsg(fd, &m, 0);
		show("SEND", r, errno, -1, NULL, 0);
		if (r == (ssize_t)len)
			sent_ok++;
		if (noreply)
			continue;
		for (j = 0; j < reads; j++) {
			int per_r = bufsize / rsegs, k;

			if (sleep_ms)
				usleep(sleep_ms * 1000);
			if (use_poll) {
				struct pollfd p = { .fd = fd, .events = POLLIN };

				show("POLL", poll(&p, 1, timeout_ms ? timeout_ms :
						  1000), errno, -1, NULL, 0);
			}
			memset(&m, 0, sizeof(m));
			for (k = 0; k < rsegs && k < 64; k++) {
				iov[k].iov_base = buf + k * per_r;
				iov[k].iov_len = k == rsegs - 1 ?
					bufsize - k * per_r : per_r;
			}
			m.msg_iov = iov;
			m.msg_iovlen = k;
			r = recvmsg(fd, &m, waitall ? MSG_WAITALL : 0);
			show("RECV", r, errno, !!(m.msg_flags & MSG_TRUNC), buf,
			     r > 0 ? r : 0);
		}
	}
	if (linger_ms)
		usleep(linger_ms * 1000);
	close(fd);
	if (quiet)
		printf("DONE messages=%d failures=%d sent_ok=%d\n",
		       nmsgs * repeat, failures, sent_ok);
	return NULL;
}

static int sink(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(port) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
	char *buf = malloc(65536);

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4)) {
		perror("bind/listen");
		return 1;
	}
	printf("READY\n");
	fflush(stdout);
	for (;;) {
		long total = 0, bad = 0, pos = 0, tags = 0;
		int c = accept(fd, NULL, NULL);
		ssize_t n, i;

		if (c < 0)
			continue;
		/* -S sizes that are multiples of 26 keep the pattern running. */
		while ((n = read(c, buf, 65536)) > 0) {
			for (i = 0; i < n; i++) {
				if (buf[i] == 'T') {
					tags++;
					continue;
				}
				if (buf[i] != 'a' + pos % 26)
					bad++;
				pos++;
			}
			total += n;
		}
		printf("SINK bytes=%ld pattern=%ld tags=%ld bad=%ld\n", total,
		       pos, tags, bad);
		fflush(stdout);
		close(c);
	}
}

static int accept_nb(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), c;

	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4)) {
		perror("bind/listen");
		return 1;
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	c = accept(fd, NULL, NULL);
	show("ACCEPT", c, errno, -1, NULL, 0);
	return 0;
}

int main(int argc, char **argv)
{
	int opt;

	/* A peer that went away must show up as EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 4)
		goto usage;
	tcp = !strcmp(argv[2], "tcp");
	if (!strcmp(argv[1], "sink"))
		return sink(atoi(argv[3]));
	if (!strcmp(argv[1], "accept-nb"))
		return accept_nb(atoi(argv[3]));
	if (!strcmp(argv[1], "echo")) {
		if (argc > 4)
			bufsize = atoi(argv[4]);
		return echo(atoi(argv[3]));
	}
	if (strcmp(argv[1], "client") || argc < 6)
		goto usage;
	peer.sin_family = AF_INET;
	inet_pton(AF_INET, argv[3], &peer.sin_addr);
	peer.sin_port = htons(atoi(argv[4]));
	optind = 5;
	while ((opt = getopt(argc, argv, "b:k:w:v:Nt:unWT:s:r:qS:Pz:")) != -1) {
		switch (opt) {
		case 'b': bufsize = atoi(optarg); break;
		case 'k': reads = atoi(optarg); break;
		case 'w': wsegs = atoi(optarg); break;
		case 'v': rsegs = atoi(optarg); break;
		case 'N': nonblock = 1; break;
		case 't': timeout_ms = atoi(optarg); break;
		case 'u': unconnected = 1; break;
		case 'n': noreply = 1; break;
		case 'W': waitall = 1; break;
		case 'T': thread_name = optarg; break;
		case 's': sleep_ms = atoi(optarg); break;
		case 'r': repeat = atoi(optarg); break;
		case 'q': quiet = 1; break;
		case 'S': pattern_size = atoi(optarg); break;
		case 'P': use_poll = 1; break;
		case 'z': linger_ms = atoi(optarg); break;
		default: goto usage;
		}
	}
	msgs = argv + optind;
	nmsgs = argc - optind;
	if (pattern_size > 0) {
		int k;

		pattern = malloc(pattern_size);
		for (k = 0; k < pattern_size; k++)
			pattern[k] = 'a' + k % 26;
		if (!nmsgs)
			nmsgs = 1;
	}
	if (thread_name) {
		pthread_t t;

		pthread_create(&t, NULL, client, NULL);
		pthread_join(t, NULL);
	} else {
		client(NULL);
	}
	return 0;
usage:
	fprintf(stderr, "see the comment at the top of l45test.c\n");
	return 2;
}
