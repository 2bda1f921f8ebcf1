// SPDX-License-Identifier: GPL-2.0
/*
 * Layer 4.5: a customization layer between the socket layer and TCP/UDP
 * over IPv4.  See kernel/README.md and the contract for the behaviour.
 */
#define pr_fmt(fmt) "layer4_5: " fmt

#include <linux/module.h>
#include <linux/init.h>
#include "l45.h"

static int __init l45_init(void)
{
	int err;

	err = l45_sock_init();
	if (err)
		return err;
	err = l45_netlink_init();
	if (err)
		goto err_sock;
	/* Last: from here on new sockets run through Layer 4.5. */
	err = l45_proto_init();
	if (err)
		goto err_netlink;
	pr_info("ready: TCP and UDP over IPv4 hooked, control on netlink 25\n");
	return 0;

err_netlink:
	l45_netlink_exit();
err_sock:
	l45_sock_exit();
	return err;
}

/*
 * Only reachable when no socket uses Layer 4.5 (each holds a module
 * reference) and no customization module is loaded (they use our
 * symbols).
 */
static void __exit l45_exit(void)
{
	l45_proto_exit();
	l45_netlink_exit();
	l45_sock_exit();
	l45_registry_exit();
	pr_info("unloaded\n");
}

module_init(l45_init);
module_exit(l45_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Layer 4.5: per-socket message customization for TCP/UDP over IPv4");
