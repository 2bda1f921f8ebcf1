// Package boot holds the steps the guest agent takes as PID 1 before it
// serves: mounting the pseudo file systems, loading the modules the image
// lists, applying the l45.* kernel command line options, autoloading Layer
// 4.5 and its customizations (contract rule R10) and finding the agent's
// virtio-serial port. Every step goes through the Sys interface so that it
// is tested against a fake; Linux is the real one.
package boot

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/proto"
	"layer45/vmimages/guest"
)

// Sys is what the boot steps need from the system.
type Sys interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	MkdirAll(path string, perm os.FileMode) error
	Symlink(oldname, newname string) error
	ReadFile(path string) ([]byte, error)
	// ReadDir returns the names in a directory (any order).
	ReadDir(path string) ([]string, error)
	Exists(path string) bool
	// LoadModule loads a module file (finit_module, no parameters).
	LoadModule(path string) error
	Sethostname(name string) error
	// WriteFile writes data to an existing file (a /proc setting).
	WriteFile(path string, data []byte) error
	// Release is uname -r.
	Release() (string, error)
	// Run runs a program to its end and returns its combined output.
	Run(argv ...string) ([]byte, error)
	Sleep(d time.Duration)
	// SetTime sets the wall clock.
	SetTime(t time.Time) error
	// Reseed mixes seed into the kernel's entropy pool and reseeds its
	// random number generator from the pool.
	Reseed(seed []byte) error
	// ConfigureNIC sets an interface's MAC (if given), brings it up and
	// adds its address, without starting a program.
	ConfigureNIC(n proto.NetConfig) error
}

// Well-known paths.
const (
	Cmdline         = "/proc/cmdline"
	VirtioPorts     = "/sys/class/virtio-ports"
	Busybox         = "/bin/busybox"
	DefaultWaitNet  = 10 * time.Second
	DefaultWaitDisk = 10 * time.Second
	DefaultWaitPort = 30 * time.Second
	pollEvery       = 50 * time.Millisecond
)

// Booter runs boot steps and records their outcomes.
type Booter struct {
	Sys Sys
	// Logf prints one console line (the agent adds its prefix).
	Logf func(format string, args ...any)
	// Bounded waits for devices to appear; zero values take the defaults.
	WaitNet, WaitDisk, WaitPort time.Duration

	steps []proto.BootStep
}

// Steps returns the steps taken so far.
func (b *Booter) Steps() []proto.BootStep { return append([]proto.BootStep(nil), b.steps...) }

func (b *Booter) record(s proto.BootStep) {
	b.steps = append(b.steps, s)
	if b.Logf != nil {
		b.Logf("%s", s.String())
	}
}

// result records a step from an error; tolerated errnos make it a success
// with a note.
func (b *Booter) result(step, target string, err error, tolerate map[syscall.Errno]string) bool {
	s := proto.BootStep{Step: step, Target: target, OK: err == nil}
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			if note, ok := tolerate[errno]; ok {
				s.OK = true
				s.Note = note
				b.record(s)
				return true
			}
			s.Errno = int(errno)
			s.ErrnoName = unix.ErrnoName(errno)
		}
		s.Error = err.Error()
	}
	b.record(s)
	return s.OK
}

// wait polls cond until it holds or d has passed.
func (b *Booter) wait(d time.Duration, cond func() bool) bool {
	for waited := time.Duration(0); ; waited += pollEvery {
		if cond() {
			return true
		}
		if waited >= d {
			return false
		}
		b.Sys.Sleep(pollEvery)
	}
}

// Mount is one file system to mount.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
}

// BaseMounts are the pseudo file systems PID 1 mounts, in order.
var BaseMounts = []Mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"debugfs", "/sys/kernel/debug", "debugfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"tracefs", "/sys/kernel/tracing", "tracefs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
}

// mounted reports whether target is a mount point of fstype according to
// /proc/self/mounts (false if that cannot be read yet).
func (b *Booter) mounted(target, fstype string) bool {
	data, err := b.Sys.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == target && f[2] == fstype {
			return true
		}
	}
	return false
}

// MountBase mounts BaseMounts, tolerating ones already mounted, and adds
// the /dev/fd and /dev/std* links.
func (b *Booter) MountBase() {
	for _, m := range BaseMounts {
		b.mount("mount", m)
	}
	for name, target := range map[string]string{
		"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
	} {
		if !b.Sys.Exists(name) {
			b.Sys.Symlink(target, name)
		}
	}
}

func (b *Booter) mount(step string, m Mount) bool {
	if b.mounted(m.Target, m.FSType) {
		b.record(proto.BootStep{Step: step, Target: m.Target, OK: true, Note: "already mounted"})
		return true
	}
	if err := b.Sys.MkdirAll(m.Target, 0o755); err != nil {
		return b.result(step, m.Target, fmt.Errorf("mkdir: %w", err), nil)
	}
	err := b.Sys.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data)
	if err != nil {
		err = fmt.Errorf("mount %s %s on %s: %w", m.FSType, m.Source, m.Target, err)
	}
	return b.result(step, m.Target, err, map[syscall.Errno]string{unix.EBUSY: "already mounted"})
}

// ConsoleLogLevel has every kernel message from here on reach the console,
// where the harness reads crash reports and a test's kernel log. Guests
// boot with a lower level (guest.BootLogLevel): the kernel's own start-up
// chatter, kept in its log, is not worth its time on an emulated serial
// port.
func (b *Booter) ConsoleLogLevel() {
	b.result("console loglevel", guest.PrintkFile, b.Sys.WriteFile(guest.PrintkFile, []byte("7\n")), nil)
}

// LoadModules loads the modules listed in file, one absolute path per line
// ('#' comments and blank lines skipped), in order. A missing file is not an
// error. EEXIST counts as loaded.
func (b *Booter) LoadModules(file string) {
	data, err := b.Sys.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		b.record(proto.BootStep{Step: "modules.load", Target: file, OK: true, Note: "absent"})
		return
	}
	if err != nil {
		b.result("modules.load", file, err, nil)
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b.loadModule("module", line, line)
	}
}

func (b *Booter) loadModule(step, target, file string) bool {
	return b.result(step, target, b.Sys.LoadModule(file), map[syscall.Errno]string{unix.EEXIST: "already loaded"})
}

// ReadCmdline reads the kernel command line and records options it could
// not use.
func (b *Booter) ReadCmdline() guest.BootArgs {
	data, err := b.Sys.ReadFile(Cmdline)
	if err != nil {
		b.result("cmdline", Cmdline, err, nil)
		return guest.BootArgs{Port: proto.DefaultPort}
	}
	o := guest.ParseBootArgs(string(data))
	for _, e := range o.Errors {
		b.record(proto.BootStep{Step: "cmdline", Error: e})
	}
	return o
}

// SetHostname applies l45.hostname.
func (b *Booter) SetHostname(name string) {
	if name == "" {
		return
	}
	b.result("hostname", name, b.Sys.Sethostname(name), nil)
}

// MountDisks applies l45.mount options: waits (bounded) for the device,
// creates the folder and mounts.
func (b *Booter) MountDisks(disks []guest.Mount) {
	for _, d := range disks {
		target := d.Dev + " on " + d.Dir
		if !b.wait(or(b.WaitDisk, DefaultWaitDisk), func() bool { return b.Sys.Exists(d.Dev) }) {
			b.record(proto.BootStep{Step: "disk", Target: target,
				Error: fmt.Sprintf("%s did not appear within %v", d.Dev, or(b.WaitDisk, DefaultWaitDisk)),
				Errno: int(unix.ENODEV), ErrnoName: "ENODEV"})
			continue
		}
		b.mount("disk", Mount{Source: d.Dev, Target: d.Dir, FSType: d.FSType})
	}
}

// ip runs busybox's ip applet (or ip from PATH without busybox).
func (b *Booter) ip(args ...string) error {
	argv := append([]string{"ip"}, args...)
	if b.Sys.Exists(Busybox) {
		argv = append([]string{Busybox}, argv...)
	}
	out, err := b.Sys.Run(argv...)
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "File exists") {
			return unix.EEXIST
		}
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, msg)
	}
	return nil
}

// Network brings lo up with 127.0.0.1/8 and each l45.net interface up with
// its address (waiting, bounded, for the interface to appear).
func (b *Booter) Network(nets []guest.Net) {
	exists := map[syscall.Errno]string{unix.EEXIST: "address already present"}
	b.result("net", "lo 127.0.0.1/8", b.upWithAddr("lo", "127.0.0.1/8"), exists)
	for _, n := range nets {
		target := n.Iface + " " + n.Addr
		wait := or(b.WaitNet, DefaultWaitNet)
		if !b.wait(wait, func() bool { return b.Sys.Exists("/sys/class/net/" + n.Iface) }) {
			b.record(proto.BootStep{Step: "net", Target: target,
				Error: fmt.Sprintf("interface %s did not appear within %v", n.Iface, wait),
				Errno: int(unix.ENODEV), ErrnoName: "ENODEV"})
			continue
		}
		b.result("net", target, b.upWithAddr(n.Iface, n.Addr), exists)
	}
}

func (b *Booter) upWithAddr(iface, addr string) error {
	if err := b.ip("link", "set", "dev", iface, "up"); err != nil {
		return err
	}
	return b.ip("addr", "add", addr, "dev", iface)
}

// Autoload loads Layer 4.5 (unless it is already there, built in or
// loaded) and then every customization module, in lexical order, from
// /usr/lib/modules/RELEASE/layer4_5 (contract rule R10).
func (b *Booter) Autoload(release string) {
	dir := path.Join(guest.ModulesRoot, release, guest.CoreModule)
	core := path.Join(dir, guest.CoreModule+".ko")
	switch {
	case b.Sys.Exists("/sys/module/" + guest.CoreModule):
		b.record(proto.BootStep{Step: "autoload", Target: guest.CoreModule, OK: true, Note: "already in the kernel"})
	case b.Sys.Exists(core):
		b.loadModule("autoload", guest.CoreModule, core)
	default:
		b.record(proto.BootStep{Step: "autoload", Target: guest.CoreModule, OK: true, Note: "absent: no " + core})
	}
	custom := path.Join(dir, "customizations")
	names, err := b.Sys.ReadDir(custom)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			b.result("autoload", custom, err, nil)
		}
		return
	}
	sort.Strings(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".ko") {
			continue
		}
		b.loadModule("autoload", strings.TrimSuffix(name, ".ko"), path.Join(custom, name))
	}
}

// FindPort waits (bounded) for the virtio-serial port called name and
// returns its device path (/dev/vportNpM).
func (b *Booter) FindPort(name string) (string, error) {
	wait := or(b.WaitPort, DefaultWaitPort)
	var dev string
	found := b.wait(wait, func() bool {
		dirs, err := b.Sys.ReadDir(VirtioPorts)
		if err != nil {
			return false
		}
		sort.Strings(dirs)
		for _, d := range dirs {
			data, err := b.Sys.ReadFile(path.Join(VirtioPorts, d, "name"))
			if err == nil && strings.TrimSpace(string(data)) == name && b.Sys.Exists("/dev/"+d) {
				dev = "/dev/" + d
				return true
			}
		}
		return false
	})
	if !found {
		err := fmt.Errorf("virtio-serial port %q did not appear in %s within %v (is virtio_console loaded and the port on the QEMU command line?)", name, VirtioPorts, wait)
		b.record(proto.BootStep{Step: "port", Target: name, Error: err.Error(), Errno: int(unix.ENODEV), ErrnoName: "ENODEV"})
		return "", err
	}
	b.record(proto.BootStep{Step: "port", Target: name, OK: true, Note: dev})
	return dev, nil
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Setup makes a guest restored from a snapshot the guest the host asked for
// (proto.SetupArgs): clock, randomness, host name and network (lo is up
// since the boot the snapshot was saved after). The steps
// join Steps; the error lists those that failed.
func (b *Booter) Setup(a proto.SetupArgs) error {
	first := len(b.steps)
	now := time.Unix(0, a.Time)
	b.result("clock", now.UTC().Format(time.RFC3339Nano), b.Sys.SetTime(now), nil)
	b.result("reseed", fmt.Sprintf("%d bytes", len(a.Seed)), b.Sys.Reseed(a.Seed), nil)
	b.SetHostname(a.Hostname)
	// Setup runs while the agent serves, when its reaper owns every
	// child's exit status, and a restore should take milliseconds: no
	// program is started.
	for _, n := range a.Nets {
		b.result("net", n.Iface+" "+n.Addr, b.Sys.ConfigureNIC(n), nil)
	}
	var failed []string
	for _, s := range b.steps[first:] {
		if !s.OK {
			failed = append(failed, s.String())
		}
	}
	if failed != nil {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// virtioDevices lists the guest's virtio devices once virtio_pci is loaded;
// each has a device file with its virtio device id.
const virtioDevices = "/sys/bus/virtio/devices"

// hasVirtioDisk says whether the guest has a virtio block device (virtio
// device id 2).
func (b *Booter) hasVirtioDisk() bool {
	names, _ := b.Sys.ReadDir(virtioDevices)
	for _, n := range names {
		id, err := b.Sys.ReadFile(path.Join(virtioDevices, n, "device"))
		if err == nil && strings.TrimSpace(string(id)) == "0x0002" {
			return true
		}
	}
	return false
}

// Result is what a full boot produced.
type Result struct {
	Steps   []proto.BootStep
	Options guest.BootArgs
	Release string
	Port    string // device path of the agent's port; "" if not found
	PortErr error
}

// Run takes every boot step in order: base mounts, modules.load, the
// command line, the disk modules if the guest has a disk, hostname, disks,
// network, autoload, and finding the port.
func (b *Booter) Run() Result {
	b.MountBase()
	b.ConsoleLogLevel()
	b.LoadModules(guest.ModulesLoad)
	opts := b.ReadCmdline()
	if len(opts.Mounts) > 0 || b.hasVirtioDisk() {
		b.LoadModules(guest.DiskModulesLoad)
	}
	b.SetHostname(opts.Hostname)
	b.MountDisks(opts.Mounts)
	b.Network(opts.Nets)
	release, err := b.Sys.Release()
	if err != nil {
		b.result("uname", "", err, nil)
	} else {
		b.Autoload(release)
	}
	dev, perr := b.FindPort(opts.Port)
	return Result{Steps: b.Steps(), Options: opts, Release: release, Port: dev, PortErr: perr}
}
