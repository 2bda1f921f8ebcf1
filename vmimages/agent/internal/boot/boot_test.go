package boot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/proto"
	"layer45/vmimages/guest"
)

// fakeSys records every action in order and answers from maps.
type fakeSys struct {
	files    map[string]string
	dirs     map[string][]string
	exists   map[string]bool
	appear   map[string]int // path exists once this many sleeps have passed
	mountErr map[string]error
	loadErr  map[string]error
	runErr   map[string]string // argv joined → output of a failing run
	nicErr   map[string]error
	release  string
	sleeps   int
	calls    []string
}

func newFake() *fakeSys {
	return &fakeSys{
		files: map[string]string{}, dirs: map[string][]string{}, exists: map[string]bool{},
		appear: map[string]int{}, mountErr: map[string]error{}, loadErr: map[string]error{},
		runErr: map[string]string{}, nicErr: map[string]error{}, release: "6.1.0-56-amd64",
	}
}

func (f *fakeSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	f.calls = append(f.calls, fmt.Sprintf("mount %s %s %s", fstype, source, target))
	return f.mountErr[target]
}
func (f *fakeSys) MkdirAll(path string, perm os.FileMode) error { return nil }
func (f *fakeSys) Symlink(o, n string) error                    { return nil }
func (f *fakeSys) ReadFile(path string) ([]byte, error) {
	if s, ok := f.files[path]; ok {
		return []byte(s), nil
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: unix.ENOENT}
}
func (f *fakeSys) ReadDir(path string) ([]string, error) {
	if d, ok := f.dirs[path]; ok {
		return d, nil
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: unix.ENOENT}
}
func (f *fakeSys) Exists(path string) bool {
	if n, ok := f.appear[path]; ok {
		return f.sleeps >= n
	}
	_, file := f.files[path]
	return f.exists[path] || file
}
func (f *fakeSys) LoadModule(path string) error {
	f.calls = append(f.calls, "load "+path)
	return f.loadErr[path]
}
func (f *fakeSys) Sethostname(name string) error {
	f.calls = append(f.calls, "hostname "+name)
	return nil
}
func (f *fakeSys) Release() (string, error) { return f.release, nil }
func (f *fakeSys) WriteFile(path string, data []byte) error {
	f.calls = append(f.calls, fmt.Sprintf("write %s %q", path, data))
	return nil
}
func (f *fakeSys) Run(argv ...string) ([]byte, error) {
	cmd := strings.Join(argv, " ")
	f.calls = append(f.calls, "run "+cmd)
	if out, ok := f.runErr[cmd]; ok {
		return []byte(out), errors.New("exit status 2")
	}
	return nil, nil
}
func (f *fakeSys) Sleep(d time.Duration) { f.sleeps++ }
func (f *fakeSys) SetTime(t time.Time) error {
	f.calls = append(f.calls, "settime "+t.UTC().Format(time.RFC3339))
	return nil
}
func (f *fakeSys) ConfigureNIC(n proto.NetConfig) error {
	f.calls = append(f.calls, fmt.Sprintf("nic %s %s %s", n.Iface, n.MAC, n.Addr))
	return f.nicErr[n.Iface]
}
func (f *fakeSys) Reseed(seed []byte) error {
	f.calls = append(f.calls, fmt.Sprintf("reseed %d", len(seed)))
	return nil
}

func stepsText(steps []proto.BootStep) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.String())
	}
	return out
}

func TestMountBase(t *testing.T) {
	f := newFake()
	f.files["/proc/self/mounts"] = "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n"
	f.mountErr["/sys/kernel/debug"] = unix.EBUSY
	f.mountErr["/sys/kernel/tracing"] = unix.ENODEV
	var console []string
	b := &Booter{Sys: f, Logf: func(format string, a ...any) { console = append(console, fmt.Sprintf(format, a...)) }}
	b.MountBase()
	wantCalls := []string{
		"mount sysfs sysfs /sys",
		"mount devtmpfs devtmpfs /dev",
		"mount devpts devpts /dev/pts",
		"mount tmpfs tmpfs /dev/shm",
		"mount tmpfs tmpfs /tmp",
		"mount tmpfs tmpfs /run",
		"mount debugfs debugfs /sys/kernel/debug",
		"mount tracefs tracefs /sys/kernel/tracing",
	}
	if d := cmp.Diff(wantCalls, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	wantSteps := []string{
		"mount /proc: ok (already mounted)",
		"mount /sys: ok",
		"mount /dev: ok",
		"mount /dev/pts: ok",
		"mount /dev/shm: ok",
		"mount /tmp: ok",
		"mount /run: ok",
		"mount /sys/kernel/debug: ok (already mounted)",
		"mount /sys/kernel/tracing: FAILED: mount tracefs tracefs on /sys/kernel/tracing: no such device (ENODEV, errno 19)",
	}
	if d := cmp.Diff(wantSteps, stepsText(b.Steps())); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantSteps, console); d != "" {
		t.Errorf("console lines (-want +got):\n%s", d)
	}
}

func TestLoadModules(t *testing.T) {
	tests := []struct {
		name      string
		list      *string
		loadErr   map[string]error
		wantCalls []string
		wantSteps []string
	}{
		{
			name: "order kept, EEXIST tolerated, failure recorded",
			list: ptr("# virtio first\n/m/virtio.ko\n\n/m/virtio_ring.ko\n  /m/virtio_pci.ko  \n/m/missing.ko\n/m/virtio_console.ko\n"),
			loadErr: map[string]error{
				"/m/virtio_ring.ko": unix.EEXIST,
				"/m/missing.ko":     &fs.PathError{Op: "open", Path: "/m/missing.ko", Err: unix.ENOENT},
			},
			wantCalls: []string{"load /m/virtio.ko", "load /m/virtio_ring.ko", "load /m/virtio_pci.ko", "load /m/missing.ko", "load /m/virtio_console.ko"},
			wantSteps: []string{
				"module /m/virtio.ko: ok",
				"module /m/virtio_ring.ko: ok (already loaded)",
				"module /m/virtio_pci.ko: ok",
				"module /m/missing.ko: FAILED: open /m/missing.ko: no such file or directory (ENOENT, errno 2)",
				"module /m/virtio_console.ko: ok",
			},
		},
		{
			name:      "no list",
			wantSteps: []string{"modules.load /etc/l45/modules.load: ok (absent)"},
		},
		{
			name:      "unknown symbol",
			list:      ptr("/m/net_failover.ko\n"),
			loadErr:   map[string]error{"/m/net_failover.ko": unix.ENOENT},
			wantCalls: []string{"load /m/net_failover.ko"},
			wantSteps: []string{"module /m/net_failover.ko: FAILED: no such file or directory (ENOENT, errno 2)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			if tt.list != nil {
				f.files[guest.ModulesLoad] = *tt.list
			}
			if tt.loadErr != nil {
				f.loadErr = tt.loadErr
			}
			b := &Booter{Sys: f}
			b.LoadModules(guest.ModulesLoad)
			if d := cmp.Diff(tt.wantCalls, f.calls); d != "" {
				t.Errorf("calls (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantSteps, stepsText(b.Steps())); d != "" {
				t.Errorf("steps (-want +got):\n%s", d)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestAutoload(t *testing.T) {
	const dir = "/usr/lib/modules/6.1.0-56-amd64/layer4_5"
	tests := []struct {
		name      string
		core      bool
		loaded    bool
		custom    []string
		loadErr   map[string]error
		wantCalls []string
		wantSteps []string
	}{
		{
			name: "core then customizations in lexical order",
			core: true, custom: []string{"zz_last.ko", "README", "10_tag.ko", "02_drop.ko", "old.ko.bak"},
			loadErr:   map[string]error{dir + "/customizations/10_tag.ko": unix.EEXIST},
			wantCalls: []string{"load " + dir + "/layer4_5.ko", "load " + dir + "/customizations/02_drop.ko", "load " + dir + "/customizations/10_tag.ko", "load " + dir + "/customizations/zz_last.ko"},
			wantSteps: []string{"autoload layer4_5: ok", "autoload 02_drop: ok", "autoload 10_tag: ok (already loaded)", "autoload zz_last: ok"},
		},
		{
			name: "core already in the kernel",
			core: true, loaded: true, custom: []string{"a.ko"},
			wantCalls: []string{"load " + dir + "/customizations/a.ko"},
			wantSteps: []string{"autoload layer4_5: ok (already in the kernel)", "autoload a: ok"},
		},
		{
			name:      "nothing installed",
			wantSteps: []string{"autoload layer4_5: ok (absent: no " + dir + "/layer4_5.ko)"},
		},
		{
			name: "failures recorded, loading goes on",
			core: true, custom: []string{"b.ko", "a.ko"},
			loadErr:   map[string]error{dir + "/layer4_5.ko": unix.ENOEXEC, dir + "/customizations/a.ko": unix.ENOENT},
			wantCalls: []string{"load " + dir + "/layer4_5.ko", "load " + dir + "/customizations/a.ko", "load " + dir + "/customizations/b.ko"},
			wantSteps: []string{
				"autoload layer4_5: FAILED: exec format error (ENOEXEC, errno 8)",
				"autoload a: FAILED: no such file or directory (ENOENT, errno 2)",
				"autoload b: ok",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.exists[dir+"/layer4_5.ko"] = tt.core
			f.exists["/sys/module/layer4_5"] = tt.loaded
			if tt.custom != nil {
				f.dirs[dir+"/customizations"] = tt.custom
			}
			if tt.loadErr != nil {
				f.loadErr = tt.loadErr
			}
			b := &Booter{Sys: f}
			b.Autoload("6.1.0-56-amd64")
			if d := cmp.Diff(tt.wantCalls, f.calls); d != "" {
				t.Errorf("calls (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantSteps, stepsText(b.Steps())); d != "" {
				t.Errorf("steps (-want +got):\n%s", d)
			}
		})
	}
}

func TestNetwork(t *testing.T) {
	f := newFake()
	f.exists[Busybox] = true
	f.appear["/sys/class/net/eth0"] = 3 // appears after three polls
	f.runErr["/bin/busybox ip addr add 127.0.0.1/8 dev lo"] = "ip: RTNETLINK answers: File exists"
	f.runErr["/bin/busybox ip addr add 10.0.1.1/24 dev eth1"] = "ip: RTNETLINK answers: Invalid argument"
	f.exists["/sys/class/net/eth1"] = true
	b := &Booter{Sys: f, WaitNet: time.Second}
	b.Network([]guest.Net{{Iface: "eth0", Addr: "10.0.0.1/24"}, {Iface: "eth1", Addr: "10.0.1.1/24"}, {Iface: "eth9", Addr: "10.0.9.1/24"}})
	wantCalls := []string{
		"run /bin/busybox ip link set dev lo up",
		"run /bin/busybox ip addr add 127.0.0.1/8 dev lo",
		"run /bin/busybox ip link set dev eth0 up",
		"run /bin/busybox ip addr add 10.0.0.1/24 dev eth0",
		"run /bin/busybox ip link set dev eth1 up",
		"run /bin/busybox ip addr add 10.0.1.1/24 dev eth1",
	}
	if d := cmp.Diff(wantCalls, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	wantSteps := []string{
		"net lo 127.0.0.1/8: ok (address already present)",
		"net eth0 10.0.0.1/24: ok",
		"net eth1 10.0.1.1/24: FAILED: /bin/busybox ip addr add 10.0.1.1/24 dev eth1: exit status 2: ip: RTNETLINK answers: Invalid argument",
		"net eth9 10.0.9.1/24: FAILED: interface eth9 did not appear within 1s (ENODEV, errno 19)",
	}
	if d := cmp.Diff(wantSteps, stepsText(b.Steps())); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
	if f.sleeps < 3+20 || f.sleeps > 3+21 {
		t.Errorf("%d sleeps: the waits are not bounded as asked", f.sleeps)
	}
}

func TestMountDisks(t *testing.T) {
	f := newFake()
	f.appear["/dev/vda"] = 2
	b := &Booter{Sys: f, WaitDisk: 200 * time.Millisecond}
	b.MountDisks([]guest.Mount{{Dev: "/dev/vda", Dir: "/persist", FSType: "ext4"}, {Dev: "/dev/vdz", Dir: "/other", FSType: "ext4"}})
	if d := cmp.Diff([]string{"mount ext4 /dev/vda /persist"}, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	want := []string{"disk /persist: ok", "disk /dev/vdz on /other: FAILED: /dev/vdz did not appear within 200ms (ENODEV, errno 19)"}
	if d := cmp.Diff(want, stepsText(b.Steps())); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
}

func TestFindPort(t *testing.T) {
	f := newFake()
	f.dirs[VirtioPorts] = []string{"vport1p1", "vport1p0"}
	f.files[VirtioPorts+"/vport1p0/name"] = "org.qemu.guest_agent.0\n"
	f.files[VirtioPorts+"/vport1p1/name"] = "org.layer45.agent\n"
	f.appear["/dev/vport1p1"] = 4 // devtmpfs node shows up late
	b := &Booter{Sys: f}
	dev, err := b.FindPort("org.layer45.agent")
	if err != nil || dev != "/dev/vport1p1" {
		t.Fatalf("FindPort = %q, %v", dev, err)
	}
	if s := b.Steps()[0].String(); s != "port org.layer45.agent: ok (/dev/vport1p1)" {
		t.Errorf("step %q", s)
	}

	f = newFake()
	b = &Booter{Sys: f, WaitPort: 500 * time.Millisecond}
	if _, err := b.FindPort("org.layer45.agent"); err == nil || !strings.Contains(err.Error(), "did not appear") {
		t.Errorf("FindPort without ports = %v", err)
	}
	if f.sleeps != 10 {
		t.Errorf("%d polls, want 10", f.sleeps)
	}
}

// TestDiskModulesOnlyWithADisk: a guest loads block and ext4 when it has a
// virtio disk (mounted at boot or not), and not otherwise.
func TestDiskModulesOnlyWithADisk(t *testing.T) {
	for _, tc := range []struct {
		name    string
		devices map[string]string // virtio device → its id
		want    bool
	}{
		{"no virtio device", nil, false},
		{"network and console", map[string]string{"virtio0": "0x0001\n", "virtio1": "0x0003\n"}, false},
		{"a disk", map[string]string{"virtio0": "0x0001\n", "virtio2": "0x0002\n"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.files[guest.ModulesLoad] = "/m/virtio_net.ko\n"
			f.files[guest.DiskModulesLoad] = "/m/ext4.ko\n"
			for dev, id := range tc.devices {
				f.dirs[virtioDevices] = append(f.dirs[virtioDevices], dev)
				f.files[virtioDevices+"/"+dev+"/device"] = id
			}
			(&Booter{Sys: f, WaitPort: time.Millisecond}).Run()
			if got := slices.Contains(f.calls, "load /m/ext4.ko"); got != tc.want {
				t.Errorf("ext4 loaded: %v, want %v (calls %q)", got, tc.want, f.calls)
			}
		})
	}
}

func TestRunOrder(t *testing.T) {
	const dir = "/usr/lib/modules/6.1.0-56-amd64/layer4_5"
	f := newFake()
	f.files[guest.ModulesLoad] = "/m/virtio_net.ko\n/m/virtio_console.ko\n"
	f.files[guest.DiskModulesLoad] = "/m/virtio_blk.ko\n/m/ext4.ko\n"
	f.files[Cmdline] = "console=ttyS0 l45.hostname=t l45.mount=/dev/vda:/usr/lib/modules:ext4 l45.net=eth0,10.0.0.2/24 l45.port=p\n"
	f.exists["/dev/vda"] = true
	f.exists["/sys/class/net/eth0"] = true
	f.exists[dir+"/layer4_5.ko"] = true
	f.dirs[dir+"/customizations"] = []string{"c.ko"}
	f.dirs[VirtioPorts] = []string{"vport0p1"}
	f.files[VirtioPorts+"/vport0p1/name"] = "p\n"
	f.exists["/dev/vport0p1"] = true
	b := &Booter{Sys: f}
	r := b.Run()
	if r.Port != "/dev/vport0p1" || r.PortErr != nil || r.Release != "6.1.0-56-amd64" || r.Options.Hostname != "t" {
		t.Errorf("result %+v", r)
	}
	var order []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "mount ") || strings.Contains(c, "/dev/vda") {
			order = append(order, c)
		}
	}
	want := []string{
		`write /proc/sys/kernel/printk "7\n"`, // every message on the console once booted
		"load /m/virtio_net.ko",
		"load /m/virtio_console.ko",
		"load /m/virtio_blk.ko", // a disk to mount: the disk modules
		"load /m/ext4.ko",
		"hostname t",
		"mount ext4 /dev/vda /usr/lib/modules", // autoload reads from the disk
		"run ip link set dev lo up",
		"run ip addr add 127.0.0.1/8 dev lo",
		"run ip link set dev eth0 up",
		"run ip addr add 10.0.0.2/24 dev eth0",
		"load " + dir + "/layer4_5.ko",
		"load " + dir + "/customizations/c.ko",
	}
	if d := cmp.Diff(want, order); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
	if len(r.Steps) != len(BaseMounts)+1+2+2+1+1+2+2+1 {
		t.Errorf("%d steps:\n%s", len(r.Steps), strings.Join(stepsText(r.Steps), "\n"))
	}
}

func TestSetup(t *testing.T) {
	f := newFake()
	b := &Booter{Sys: f}
	now := time.Date(2026, 11, 30, 18, 0, 0, 0, time.UTC)
	err := b.Setup(proto.SetupArgs{
		Hostname: "client", Time: now.UnixNano(), Seed: make([]byte, 32),
		Nets: []proto.NetConfig{{Iface: "eth0", Addr: "10.0.0.40/24", MAC: "52:54:00:00:00:01"}},
	})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	wantCalls := []string{
		"settime 2026-11-30T18:00:00Z",
		"reseed 32",
		"hostname client",
		"nic eth0 52:54:00:00:00:01 10.0.0.40/24",
	}
	if d := cmp.Diff(wantCalls, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}

	// A failing step fails the setup and is named.
	f.nicErr["eth0"] = fmt.Errorf("SIOCSIFHWADDR: %w", unix.EBUSY)
	err = b.Setup(proto.SetupArgs{Time: now.UnixNano(), Seed: []byte{1},
		Nets: []proto.NetConfig{{Iface: "eth0", Addr: "10.0.0.41/24", MAC: "52:54:00:00:00:02"}}})
	if err == nil || !strings.Contains(err.Error(), "net eth0 10.0.0.41/24: FAILED") || strings.Contains(err.Error(), "clock") {
		t.Errorf("Setup with a failing step: %v; want only that step named", err)
	}
}
