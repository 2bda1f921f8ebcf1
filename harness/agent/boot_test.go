package agent

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestBootQEMU boots the real agent as PID 1 of a QEMU guest and drives it
// with the client. It needs a kernel and its modules, so it runs only when
//
//	L45_AGENT_KERNEL=/path/to/vmlinuz
//	L45_AGENT_MODULES=/path/to/lib/modules/RELEASE
//
// are set (and not with -short). L45_AGENT_ACCEL=kvm uses KVM (default tcg). The initramfs is assembled in a temporary
// folder from the agent (built here), the virtio modules, a static busybox
// if the host has one, and dummy.ko standing in for a Layer 4.5
// customization (autoload).
func TestBootQEMU(t *testing.T) {
	kernel, mods := os.Getenv("L45_AGENT_KERNEL"), os.Getenv("L45_AGENT_MODULES")
	if testing.Short() || kernel == "" || mods == "" {
		t.Skip("set L45_AGENT_KERNEL and L45_AGENT_MODULES to boot a guest")
	}
	for _, tool := range []string{"qemu-system-x86_64", "cpio", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	release := filepath.Base(mods)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	copyFile := func(src, dst string, mode os.FileMode) {
		t.Helper()
		data, err := os.ReadFile(src)
		must(err)
		must(os.MkdirAll(filepath.Dir(dst), 0o755))
		must(os.WriteFile(dst, data, mode))
	}

	build := exec.Command("go", "build", "-o", filepath.Join(root, "init"), "layer45/vmimages/agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	var load []string
	for _, m := range []string{
		"drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko",
		"drivers/virtio/virtio_pci_legacy_dev.ko", "drivers/virtio/virtio_pci_modern_dev.ko",
		"drivers/virtio/virtio_pci.ko", "drivers/char/virtio_console.ko",
		"net/core/failover.ko", "drivers/net/net_failover.ko", "drivers/net/virtio_net.ko",
	} {
		dst := "/lib/l45/" + filepath.Base(m)
		copyFile(filepath.Join(mods, "kernel", m), filepath.Join(root, dst), 0o644)
		load = append(load, dst)
	}
	must(os.MkdirAll(filepath.Join(root, "etc/l45"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/l45/modules.load"), []byte(strings.Join(load, "\n")+"\n"), 0o644))
	copyFile(filepath.Join(mods, "kernel/drivers/net/dummy.ko"),
		filepath.Join(root, "usr/lib/modules", release, "layer4_5/customizations/10_dummy.ko"), 0o644)
	copyFile(filepath.Join(mods, "kernel/drivers/net/macvtap.ko"), filepath.Join(root, "lib/l45/extra/macvtap.ko"), 0o644)
	haveBusybox := false
	for _, bb := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if out, err := exec.Command("file", "-L", bb).Output(); err == nil && bytes.Contains(out, []byte("statically linked")) {
			copyFile(bb, filepath.Join(root, "bin/busybox"), 0o755)
			for _, applet := range []string{"sh", "ip", "cat", "uname", "sleep", "echo", "hostname", "ls", "true"} {
				must(os.Symlink("busybox", filepath.Join(root, "bin", applet)))
			}
			haveBusybox = true
			break
		}
	}
	if !haveBusybox {
		t.Skip("no static busybox on the host")
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	pack := exec.Command("sh", "-c", "find . | sort | cpio -o -H newc -R 0:0 --quiet > "+initrd)
	pack.Dir = root
	if out, err := pack.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}

	sock := filepath.Join(dir, "agent.sock")
	args := []string{
		"-m", "512", "-nographic", "-smp", "1", // rebooting is tested: no -no-reboot
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 l45.hostname=booted l45.net=eth0,10.0.2.15/24",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=agent,path=" + sock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=org.layer45.agent",
		"-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0",
	}
	// /dev/kvm can be present and still not work: KVM only when asked.
	accel := os.Getenv("L45_AGENT_ACCEL")
	if accel == "" {
		accel = "tcg"
	}
	args = append([]string{"-accel", accel}, args...)
	var consoleMu sync.Mutex
	var console bytes.Buffer
	qemu := exec.Command("qemu-system-x86_64", args...)
	qemu.Stdout = writerFunc(func(p []byte) (int, error) {
		consoleMu.Lock()
		defer consoleMu.Unlock()
		return console.Write(p)
	})
	qemu.Stderr = qemu.Stdout
	must(qemu.Start())
	exited := make(chan error, 1)
	go func() { exited <- qemu.Wait() }()
	t.Cleanup(func() {
		qemu.Process.Kill()
		<-exited
		consoleMu.Lock()
		defer consoleMu.Unlock()
		if t.Failed() || testing.Verbose() {
			t.Logf("console:\n%s", console.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var conn net.Conn
	for {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("dial %s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var transcript bytes.Buffer
	started := time.Now()
	c, err := Dial(ctx, conn, WithTranscriptWriter(&transcript))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := c.Hello()
	t.Logf("hello after %v: release %s, uptime %v, %d boot steps", time.Since(started).Round(time.Millisecond), h.Release, h.Uptime, len(h.Boot))
	for _, s := range h.Boot {
		t.Logf("  %s", s)
		if !s.OK && s.Step != "mount" { // tracefs may be absent on small kernels
			t.Errorf("boot step failed: %s", s)
		}
	}
	if h.Release != release || h.Hostname != "booted" {
		t.Errorf("hello %+v", h)
	}

	r, err := c.Run(ctx, Cmd{Argv: []string{"uname", "-a"}})
	if err != nil || r.Err() != nil {
		t.Fatalf("uname -a: %v %v", err, r.Err())
	}
	t.Logf("uname -a: %s", strings.TrimSpace(string(r.Stdout)))
	r, err = c.Run(ctx, Cmd{Argv: []string{"ip", "addr"}})
	if err != nil || !bytes.Contains(r.Stdout, []byte("10.0.2.15/24")) || !bytes.Contains(r.Stdout, []byte("127.0.0.1/8")) {
		t.Errorf("ip addr: %v\n%s", err, r.Stdout)
	}
	if err := c.PutFile(ctx, "/tmp/a/b/f", []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := c.ReadFile(ctx, "/tmp/a/b/f"); err != nil || string(data) != "data" {
		t.Errorf("ReadFile = %q, %v", data, err)
	}
	if data, err := c.ReadFile(ctx, "/sys/kernel/tracing/trace"); err != nil || !bytes.Contains(data, []byte("# tracer:")) {
		t.Errorf("trace buffer = %.100q, %v", data, err)
	}
	if data, err := c.ReadFile(ctx, "/sys/module/dummy/initstate"); err != nil || strings.TrimSpace(string(data)) != "live" {
		t.Errorf("autoloaded dummy: %q, %v", data, err)
	}
	_, err = c.LoadModule(ctx, "/lib/l45/extra/macvtap.ko", "")
	var me *ModuleError
	if !errors.As(err, &me) || !errors.Is(err, syscall.ENOENT) || !strings.Contains(strings.Join(me.Log, "\n"), "Unknown symbol") {
		t.Errorf("insmod macvtap without its dependencies = %v", err)
	}
	t.Logf("refused load: %v", err)
	if res, err := c.UnloadModule(ctx, "dummy"); err != nil {
		t.Errorf("rmmod dummy: %v", err)
	} else {
		t.Logf("rmmod dummy: %+v", res)
	}
	if _, err := c.UnloadModule(ctx, "dummy"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("second rmmod dummy = %v, want ENOENT", err)
	}
	recs, cursor, err := c.KernelLog(ctx, 0)
	if err != nil || len(recs) < 50 || recs[0].Seq != 0 {
		t.Errorf("KernelLog: %d records, cursor %d, %v", len(recs), cursor, err)
	}
	p, err := c.Start(ctx, Cmd{Argv: []string{"sleep", "100"}})
	must(err)
	if r, err := p.Signal(ctx, syscall.SIGTERM); err != nil || r.Signal != "SIGTERM" {
		t.Errorf("signal sleep: %+v %v", r, err)
	}
	r, err = c.Run(ctx, Cmd{Argv: []string{"sh", "-c", "sleep 100 & sleep 100"}, Timeout: time.Second})
	if err != nil || !r.TimedOut {
		t.Errorf("timeout: %+v %v", r, err)
	}
	// Reboot on the same connection: the new agent says hello again.
	if err := c.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	h2, err := c.AwaitHello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hello after reboot: uptime %v", h2.Uptime)
	if r, err := c.Run(ctx, Cmd{Argv: []string{"cat", "/sys/module/dummy/initstate"}}); err != nil || strings.TrimSpace(string(r.Stdout)) != "live" {
		t.Errorf("after reboot, dummy autoloaded again: %+v %v", r, err)
	}
	if err := c.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		exited <- nil
	case <-time.After(30 * time.Second):
		t.Error("QEMU still running 30s after power off")
	}
	consoleMu.Lock()
	out := console.String()
	consoleMu.Unlock()
	for _, want := range []string{"l45-agent: mount /proc: ok", "l45-agent: port org.layer45.agent: ok", "l45-agent: powering off as asked by the host"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if testing.Verbose() {
		t.Logf("transcript: %d bytes, first line %.200s", transcript.Len(), strings.SplitN(transcript.String(), "\n", 2)[0])
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
