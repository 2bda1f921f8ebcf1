package vm

import (
	"layer45/harness/kernels"
	"layer45/vmimages/guest"
)

// config is a guest's settings; Options change it.
type config struct {
	name       string
	kernel     *kernels.Kernel
	memoryMiB  int
	cpus       int
	kernelArgs []string
	nics       []nicConfig
	disks      []diskConfig
	mounts     []guest.Mount
	coldBoot   bool
	restore    bool
	bzImage    bool
}

type nicConfig struct {
	link *Link
	addr string // CIDR
}

type diskConfig struct {
	path     string
	readOnly bool
}

// Option sets up a guest.
type Option func(*config)

// WithName names the guest in logs and evidence (default: guest<N>).
func WithName(name string) Option { return func(c *config) { c.name = name } }

// WithMemory sets the guest's memory (default 1024 MiB: the initramfs with
// dig's libraries is about 80 MiB and unpacks into RAM).
func WithMemory(mib int) Option { return func(c *config) { c.memoryMiB = mib } }

// WithCPUs sets the number of vCPUs (default 1).
func WithCPUs(n int) Option { return func(c *config) { c.cpus = n } }

// WithKernelArgs appends to the kernel command line.
func WithKernelArgs(args ...string) Option {
	return func(c *config) { c.kernelArgs = append(c.kernelArgs, args...) }
}

// WithNIC plugs a network card into l with the address addr (CIDR, e.g.
// 10.0.0.20/24); the guest calls it eth0, eth1, ... in order.
func WithNIC(l *Link, addr string) Option {
	return func(c *config) { c.nics = append(c.nics, nicConfig{link: l, addr: addr}) }
}

// WithDisk attaches a raw disk image; the first is /dev/vda.
func WithDisk(path string, readOnly bool) Option {
	return func(c *config) { c.disks = append(c.disks, diskConfig{path: path, readOnly: readOnly}) }
}

// WithMount has the agent mount dev on dir at boot, before Layer 4.5's
// autoload, so a persistent disk can hold the customizations folder.
func WithMount(dev, dir, fstype string) Option {
	return func(c *config) { c.mounts = append(c.mounts, guest.Mount{Dev: dev, Dir: dir, FSType: fstype}) }
}

// WithColdBoot boots the guest even where it could be restored from a
// snapshot: for tests of the boot itself.
func WithColdBoot() Option { return func(c *config) { c.coldBoot = true } }

// WithBzImage cold-boots the kernel's bzImage, as a boot loader would,
// instead of the ELF kernel the harness unpacks from it: for measuring what
// the unpacking saves.
func WithBzImage() Option { return func(c *config) { c.bzImage, c.coldBoot = true, true } }

// WithRestore restores the guest from a snapshot even with L45_SNAPSHOT=0:
// for tests and benchmarks of restoring itself.
func WithRestore() Option { return func(c *config) { c.restore = true } }
