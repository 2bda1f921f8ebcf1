// Package qemu builds QEMU command lines for harness guests and runs them
// with an exec.Cmd-like Start/Wait. Each QEMU quirk the harness relies on is
// spelled out next to the arguments it shapes.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"layer45/vmimages/agent/proto"
)

// Binary is the QEMU system emulator the harness runs.
const Binary = "qemu-system-x86_64"

// Accel is how guest code runs.
type Accel string

const (
	KVM Accel = "kvm"
	TCG Accel = "tcg"
)

// NIC is a guest network card plugged into a stream socket (the harness's
// segment hub listens there).
type NIC struct {
	MAC    string
	Socket string
}

// Disk is a raw disk image attached as a virtio block device.
type Disk struct {
	Path     string
	ReadOnly bool
}

// Config is everything one guest's QEMU is started with.
type Config struct {
	Name        string
	Kernel      string
	Initrd      string
	Append      []string
	MemoryMiB   int
	CPUs        int
	Accel       Accel
	AgentSocket string
	NICs        []NIC
	Disks       []Disk
	// QMPSocket, when set, is where QEMU listens for its machine protocol
	// (QMP), through which the harness saves guests.
	QMPSocket string
	// Incoming, when set, is a state file saved by QMP.SaveState: QEMU
	// starts waiting for it (-incoming defer) and QMP.Resume loads it, so
	// the guest resumes instead of booting. Every other setting must be the
	// one the state was saved with, except the host ends of sockets and
	// MemoryShared.
	Incoming string
	// MemoryFile, when set, is a file holding the guest's RAM. With
	// MemoryShared the guest writes through to it: a guest about to be
	// saved, whose state then leaves RAM out (it is in the file). Without,
	// the guest maps it copy-on-write and starts from the memory saved
	// there: restoring reads no RAM, pages come in as the guest uses them.
	MemoryFile   string
	MemoryShared bool
}

// Args is the QEMU argument list for c (without the binary).
func (c *Config) Args() []string {
	a := []string{
		"-name", c.Name,
		// No default devices, no user config: every device is one we asked for.
		"-nodefaults", "-no-user-config", "-display", "none",
		// A reboot or panic ends QEMU, so a guest never loops; the harness
		// restarts guests itself when a test asks for a reboot.
		"-no-reboot",
		"-machine", c.machineArg(), "-m", strconv.Itoa(c.MemoryMiB), "-smp", strconv.Itoa(c.CPUs),
		"-accel", c.accelArg(),
	}
	if c.MemoryFile != "" {
		share := "off"
		if c.MemoryShared {
			share = "on"
		}
		a = append(a, "-object", fmt.Sprintf("memory-backend-file,id=ram,size=%dM,mem-path=%s,share=%s", c.MemoryMiB, strings.ReplaceAll(c.MemoryFile, ",", ",,"), share))
	}
	if c.Accel == KVM {
		a = append(a, "-cpu", "host")
	}
	a = append(a,
		"-kernel", c.Kernel, "-initrd", c.Initrd,
		"-append", strings.Join(c.Append, " "),
		// The console is QEMU's standard output: the harness streams it.
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
		"-device", "virtio-serial-pci,id=vser",
		// wait=off: QEMU starts without the host connected; the host
		// connects and then waits for the agent's hello.
		"-chardev", "socket,id=agent,path="+c.AgentSocket+",server=on,wait=off",
		"-device", "virtserialport,bus=vser.0,chardev=agent,name="+proto.DefaultPort,
	)
	for i, n := range c.NICs {
		id := "net" + strconv.Itoa(i)
		a = append(a,
			"-netdev", "stream,id="+id+",server=off,addr.type=unix,addr.path="+n.Socket,
			"-device", "virtio-net-pci,netdev="+id+",mac="+n.MAC)
	}
	if c.QMPSocket != "" {
		a = append(a, "-qmp", "unix:"+c.QMPSocket+",server=on,wait=off")
	}
	if c.Incoming != "" {
		a = append(a, "-incoming", "defer")
	}
	for i, d := range c.Disks {
		drive := "file=" + d.Path + ",format=raw,if=none,id=disk" + strconv.Itoa(i)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		a = append(a, "-drive", drive, "-device", "virtio-blk-pci,drive=disk"+strconv.Itoa(i))
	}
	return a
}

func (c *Config) machineArg() string {
	if c.MemoryFile != "" {
		return "q35,memory-backend=ram"
	}
	return "q35"
}

// accelArg names the accelerator; with TCG and several vCPUs it asks for
// one host thread per vCPU (multi-threaded TCG), so guest CPUs really run
// in parallel and races between them can happen as on hardware.
func (c *Config) accelArg() string {
	if c.Accel == TCG && c.CPUs > 1 {
		return "tcg,thread=multi"
	}
	return string(c.Accel)
}

// CommandLine is the full command, shell-quoted, for evidence and for a
// person to paste.
func (c *Config) CommandLine() string {
	parts := []string{Binary}
	for _, a := range c.Args() {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=,:+@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Cmd is a running (or finished) QEMU.
type Cmd struct {
	Config *Config
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan struct{}
	err    error
	once   sync.Once
}

// Command prepares QEMU for c; console receives the guest's serial output.
func Command(c *Config, console io.Writer) *Cmd {
	cmd := exec.Command(Binary, c.Args()...)
	q := &Cmd{Config: c, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = console
	cmd.Stderr = &q.stderr
	// Its own process group so a signal to the test binary's group does not
	// race our orderly shutdown, and Pdeathsig so QEMU dies with the test
	// binary even when that is killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return q
}

// Installed checks that QEMU is on the PATH; the error wraps
// exec.ErrNotFound.
func Installed() error {
	if _, err := exec.LookPath(Binary); err != nil {
		return fmt.Errorf("%s is not installed (%w): run `make setup` (it installs qemu-system-x86)", Binary, err)
	}
	return nil
}

// Start starts QEMU.
func (q *Cmd) Start() error {
	if err := Installed(); err != nil {
		return err
	}
	if err := q.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", Binary, err)
	}
	go func() {
		err := q.cmd.Wait()
		if err != nil {
			if msg := strings.TrimSpace(q.stderr.String()); msg != "" {
				err = fmt.Errorf("%w: %s", err, msg)
			}
		}
		q.err = err
		close(q.done)
	}()
	return nil
}

// Done is closed when QEMU has exited.
func (q *Cmd) Done() <-chan struct{} { return q.done }

// Wait waits for QEMU to exit.
func (q *Cmd) Wait() error {
	<-q.done
	return q.err
}

// Exited reports whether QEMU has exited, and with what.
func (q *Cmd) Exited() (bool, error) {
	select {
	case <-q.done:
		return true, q.err
	default:
		return false, nil
	}
}

// Pid is QEMU's process id.
func (q *Cmd) Pid() int { return q.cmd.Process.Pid }

// Kill ends QEMU: SIGTERM, then SIGKILL if it has not exited after grace.
func (q *Cmd) Kill(grace time.Duration) {
	q.once.Do(func() {
		if q.cmd.Process == nil {
			return
		}
		q.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-q.done:
		case <-time.After(grace):
			q.cmd.Process.Kill()
			<-q.done
		}
	})
}

// ProbeKVM reports whether KVM works here: /dev/kvm can be opened and QEMU
// can create a KVM guest with the host CPU model. Only opening the device is
// not enough: nested set-ups refuse host MSRs or hang; a paused QEMU that is
// told to quit answers within a second either way.
func ProbeKVM(ctx context.Context) (bool, string) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false, "/dev/kvm: " + err.Error()
	}
	f.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary, "-accel", "kvm", "-cpu", "host", "-machine", "q35",
		"-nodefaults", "-display", "none", "-monitor", "stdio")
	cmd.Stdin = strings.NewReader("cont\nquit\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return false, "QEMU with KVM did not answer within 10s"
		}
		return false, "QEMU with KVM failed: " + lastLine(string(out))
	}
	return true, "KVM works"
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
