// Command agent is the Layer 4.5 test guest's init: PID 1 of a disposable
// QEMU guest, built static (CGO_ENABLED=0) and placed at /init in the
// initramfs.
//
// At boot it mounts the pseudo file systems, loads the modules listed in
// /etc/l45/modules.load, applies the kernel command line options
//
//	l45.hostname=NAME                 host name
//	l45.net=IFACE,ADDR/PREFIX         bring IFACE up with ADDR (repeatable; lo is always up)
//	l45.mount=DEV:DIR:FSTYPE          mount a disk (repeatable)
//	l45.port=NAME                     virtio-serial port name (default org.layer45.agent)
//
// autoloads Layer 4.5 and its customization modules from
// /usr/lib/modules/$(uname -r)/layer4_5 (contract rule R10), and then serves
// the host over the virtio-serial port (package layer45/vmimages/agent/proto
// describes the protocol, layer45/harness/agent is the client). Every step
// is logged on /dev/console as a line starting with "l45-agent: ". It reaps
// orphaned processes for as long as the guest runs. If it cannot find its
// port it says so on the console and powers the guest off.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/internal/boot"
	"layer45/vmimages/agent/proto"
	"layer45/vmimages/agent/server"
)

// Version is the agent's version, reported in its hello.
const Version = "0.1.0"

// The module-loading child makes its one system call on the main thread
// (see server.FinitChild); init functions run there.
func init() {
	if len(os.Args) > 1 && os.Args[1] == server.FinitChildArg {
		runtime.LockOSThread()
	}
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == server.FinitChildArg {
		os.Exit(server.FinitChild(os.Args[2], os.Args[3]))
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "l45-agent: this program is the init (PID 1) of a Layer 4.5 test guest; it does not run elsewhere")
		os.Exit(2)
	}
	con := &console{}
	defer func() {
		// PID 1 must never return or die: a panic here would be a kernel
		// panic with nothing said.
		if r := recover(); r != nil {
			fatal(con, fmt.Sprintf("agent panic: %v", r))
		}
		fatal(con, "agent main returned")
	}()
	run(con)
}

func run(con *console) {
	os.Setenv("PATH", strings.TrimPrefix(server.DefaultEnv[0], "PATH="))
	os.Setenv("HOME", "/")
	os.Chdir("/")
	ignoreSignals(con)

	start := time.Now()
	b := &boot.Booter{Sys: boot.Linux{}, Logf: con.logf}
	res := b.Run()
	if res.PortErr != nil {
		fatal(con, res.PortErr.Error())
	}
	con.logf("boot steps done in %v", time.Since(start).Round(time.Millisecond))

	var u unix.Utsname
	unix.Uname(&u)
	cmdline, _ := os.ReadFile(boot.Cmdline)
	hello := func() proto.Hello {
		hostname, _ := os.Hostname()
		return proto.Hello{
			Protocol:      proto.Version,
			AgentVersion:  Version,
			Release:       unix.ByteSliceToString(u.Release[:]),
			KernelVersion: unix.ByteSliceToString(u.Version[:]),
			Machine:       unix.ByteSliceToString(u.Machine[:]),
			Hostname:      hostname,
			Cmdline:       strings.TrimSpace(string(cmdline)),
			Uptime:        uptime(),
			Boot:          b.Steps(),
		}
	}
	srv := server.New(server.Config{Hello: hello, Setup: b.Setup, Logf: con.logf})
	serve(con, srv, res.Port)
}

// serve opens the port and serves on it forever, reopening it after
// errors.
func serve(con *console, srv *server.Server, dev string) {
	failures := 0
	for {
		port, err := openPort(dev)
		if err != nil {
			failures++
			if failures > 50 {
				fatal(con, fmt.Sprintf("cannot open %s: %v", dev, err))
			}
			con.logf("open %s: %v; retrying", dev, err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		con.logf("serving on %s", dev)
		err = srv.Serve(&portConn{f: port, sleep: time.Sleep})
		port.Close()
		con.logf("connection on %s ended: %v; serving again", dev, err)
		time.Sleep(100 * time.Millisecond)
	}
}

// openPort opens the virtio-serial device in blocking mode: writes then wait
// for the host to connect instead of failing, and no poller is involved.
func openPort(dev string) (*os.File, error) {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), dev), nil
}

// portConn adapts a virtio-serial port to the server. While no host is
// connected, read(2) on the port returns 0 at once; portConn waits and
// tries again instead of reporting end of file. It tries often: a guest
// restored from a snapshot waits here for its new host, and the restore
// should take a fraction of a second.
type portConn struct {
	f interface {
		io.Reader
		io.Writer
	}
	sleep func(time.Duration)
}

func (p *portConn) Read(b []byte) (int, error) {
	for {
		n, err := p.f.Read(b)
		if n > 0 {
			return n, nil
		}
		if err != nil && err != io.EOF {
			return 0, err
		}
		p.sleep(10 * time.Millisecond)
	}
}

func (p *portConn) Write(b []byte) (int, error) { return p.f.Write(b) }

// uptime reads /proc/uptime.
func uptime() time.Duration {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	return parseUptime(string(data))
}

func parseUptime(s string) time.Duration {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return time.Duration(secs * float64(time.Second))
}

// ignoreSignals keeps signals that would end a Go program from ending PID
// 1. Handled (not ignored) so that programs the agent starts get the
// default dispositions back at exec.
func ignoreSignals(con *console) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE)
	go func() {
		for sig := range ch {
			con.logf("ignoring signal %v", sig)
		}
	}()
}

// fatal reports a boot failure and powers the guest off; it never returns.
func fatal(con *console, msg string) {
	con.logf("FATAL: %s", msg)
	con.logf("powering off")
	unix.Sync()
	time.Sleep(500 * time.Millisecond)
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	con.logf("power off failed: %v; halting here", err)
	for {
		time.Sleep(time.Hour)
	}
}

// console writes the agent's lines to /dev/console, each prefixed with
// "l45-agent: ". Until /dev is mounted it writes to stderr (which the kernel
// opened on the initramfs's /dev/console, if there was one). When it
// opens /dev/console it also makes it the agent's stdin, stdout and stderr
// if those were not open, so that a Go runtime crash is seen.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *console) writer() io.Writer {
	if c.w != nil {
		return c.w
	}
	fd, err := unix.Open("/dev/console", unix.O_WRONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.Stderr
	}
	for std := 0; std <= 2; std++ {
		var st unix.Stat_t
		if unix.Fstat(std, &st) != nil {
			unix.Dup3(fd, std, 0)
		}
	}
	c.w = os.NewFile(uintptr(fd), "/dev/console")
	return c.w
}

func (c *console) logf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	io.WriteString(c.writer(), prefixLines(fmt.Sprintf(format, args...)))
}

// prefixLines puts "l45-agent: " before every line of msg.
func prefixLines(msg string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(msg, "\n"), "\n") {
		b.WriteString("l45-agent: ")
		b.WriteString(line)
		b.WriteString("\n")
	}
	return b.String()
}
