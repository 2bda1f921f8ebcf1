// Package guest is what the host and a guest image agree on: where the
// harness's programs and files live inside a guest, which kernel module is
// Layer 4.5's core, and the l45.* kernel arguments that configure a guest
// at boot. The host encodes (BootArgs.Encode), the agent parses
// (ParseBootArgs); a round-trip test keeps the two in step.
package guest

// Paths inside every guest image.
const (
	// L45ctl sends Layer 4.5 control requests (netlink) from inside a guest.
	L45ctl = "/usr/bin/l45ctl"
	// L45net makes socket calls on demand and reports what it saw.
	L45net = "/usr/bin/l45net"
	// ModulesLoad lists, one path a line and in load order, the kernel
	// modules the agent loads at boot (virtio, console, network).
	ModulesLoad = "/etc/l45/modules.load"
	// DiskModulesLoad lists the same way the modules a guest with a disk
	// loads at boot besides (block, ext4).
	DiskModulesLoad = "/etc/l45/modules.disk"
	// ModulesRoot is the kernel's module tree (/usr/lib/modules/RELEASE).
	ModulesRoot = "/usr/lib/modules"
	// PrintkFile sets the console's log level; the agent raises it to 7
	// (every message) as soon as /proc is mounted.
	PrintkFile = "/proc/sys/kernel/printk"
)

// BootLogLevel is the console log level a guest boots with (loglevel=):
// warnings and worse reach the console from the first instant, so a crash
// at boot is still seen, but not the kernel's hundreds of start-up info
// lines, which cost a tenth of the boot on an emulated serial port. They
// stay in the kernel log (dmesg evidence).
const BootLogLevel = 5

// CoreModule is the name of Layer 4.5's core module: the agent loads
// ModulesRoot/RELEASE/CoreModule/CoreModule.ko at boot (R10) when the
// kernel does not have it built in, and tests load it by this name. A tree
// under test may name its core otherwise (its settings, harness/repo):
// the file and the name tests load keep this one, the kernel's module
// name (rmmod, /sys/module) is the tree's.
const CoreModule = "layer4_5"
