#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Put Layer 4.5 into a kernel source tree so it can be built in
# (CONFIG_LAYER4_5=y, see config/builtin.config) or as an in-tree module.
#
#	kernel/builtin/apply.sh LINUX_SRC_DIR
#
# Copies the core to net/layer4_5/ and the module interface header to
# include/layer4_5/, and wires net/Kconfig and net/Makefile.  Idempotent:
# running it again refreshes the copies and adds nothing twice.
set -eu

if [ $# -ne 1 ] || [ ! -f "$1/net/Kconfig" ] || [ ! -f "$1/net/Makefile" ]; then
	echo "usage: $0 LINUX_SRC_DIR (a kernel source tree)" >&2
	exit 2
fi
linux=$1
here=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$linux/net/layer4_5" "$linux/include/layer4_5"
cp "$here"/layer4_5/*.c "$here"/layer4_5/*.h "$here"/layer4_5/Kconfig \
	"$linux/net/layer4_5/"
cp "$here/include/layer4_5/customization.h" "$linux/include/layer4_5/"
# In a tree the header is on the standard include path: no -I needed.
grep -v 'src)/../include' "$here/layer4_5/Kbuild" > "$linux/net/layer4_5/Makefile"

if ! grep -q 'net/layer4_5/Kconfig' "$linux/net/Kconfig"; then
	# Inside "if NET": right after the IPv4 options.
	sed -i '/^source "net\/ipv4\/Kconfig"/a source "net/layer4_5/Kconfig"' \
		"$linux/net/Kconfig"
	grep -q 'net/layer4_5/Kconfig' "$linux/net/Kconfig" || {
		echo "apply.sh: could not find net/ipv4/Kconfig in net/Kconfig" >&2
		exit 1
	}
fi
if ! grep -q 'CONFIG_LAYER4_5' "$linux/net/Makefile"; then
	echo 'obj-$(CONFIG_LAYER4_5)		+= layer4_5/' >> "$linux/net/Makefile"
fi
echo "Layer 4.5 applied to $linux (enable with CONFIG_LAYER4_5=y or =m)"
