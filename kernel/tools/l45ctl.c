// SPDX-License-Identifier: GPL-2.0
/*
 * l45ctl: send one Layer 4.5 control command over netlink (protocol 25)
 * and print the JSON reply.
 *
 *	l45ctl [-r] [-n] 'CUST_REPORT'
 *	l45ctl 'TOGGLE 101 0 END'
 *
 * -r sends the bytes without the trailing NUL; -n drops to uid/gid 65534
 * first (to check the CAP_NET_ADMIN test).  Exit status 0 when a reply
 * arrived.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <linux/netlink.h>

#define L45_NETLINK 25

int main(int argc, char **argv)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	struct timeval tv = { .tv_sec = 10 };
	int raw = 0, fd, n;
	struct nlmsghdr *nlh;
	const char *req;
	size_t plen;
	char *buf;

	while (argc > 1 && argv[1][0] == '-' && argv[1][1]) {
		if (!strcmp(argv[1], "-r")) {
			raw = 1;
		} else if (!strcmp(argv[1], "-n")) {
			if (setgid(65534) || setuid(65534)) {
				perror("l45ctl: drop privileges");
				return 1;
			}
		} else {
			break;
		}
		argv++;
		argc--;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: l45ctl [-r] [-n] REQUEST\n");
		return 2;
	}
	req = argv[1];
	plen = strlen(req) + (raw ? 0 : 1);
	fd = socket(AF_NETLINK, SOCK_RAW, L45_NETLINK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("l45ctl: netlink");
		return 1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	buf = calloc(1, 1 << 20);
	if (!buf)
		return 1;
	nlh = (struct nlmsghdr *)buf;
	nlh->nlmsg_len = NLMSG_LENGTH(plen);
	nlh->nlmsg_type = NLMSG_MIN_TYPE;
	nlh->nlmsg_seq = 1;
	nlh->nlmsg_pid = getpid();
	memcpy(NLMSG_DATA(nlh), req, plen);
	if (sendto(fd, buf, nlh->nlmsg_len, 0, (struct sockaddr *)&sa,
		   sizeof(sa)) < 0) {
		perror("l45ctl: send");
		return 1;
	}
	n = recv(fd, buf, 1 << 20, 0);
	if (n < (int)NLMSG_HDRLEN) {
		perror("l45ctl: no reply");
		return 1;
	}
	if (nlh->nlmsg_len > (unsigned int)n || nlh->nlmsg_len < NLMSG_HDRLEN) {
		fprintf(stderr, "l45ctl: bad reply length\n");
		return 1;
	}
	plen = nlh->nlmsg_len - NLMSG_HDRLEN;
	while (plen && ((char *)NLMSG_DATA(nlh))[plen - 1] == '\0')
		plen--;
	fwrite(NLMSG_DATA(nlh), 1, plen, stdout);
	putchar('\n');
	return 0;
}
