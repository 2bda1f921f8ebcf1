// Package vm gives tests real guests: a QEMU machine booted with the
// harness's kernel and image, its console streamed and watched for kernel
// crashes, its agent ready for commands, and evidence kept when the test
// fails. Boot(t, ...) is the one call a test needs; Start is the same without
// a testing.TB for command-line tools.
package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"layer45/harness/agent"
	"layer45/harness/artifacts"
	"layer45/harness/console"
	"layer45/harness/initramfs"
	"layer45/harness/qemu"
	"layer45/vmimages/guest"
)

// Machine is a running guest.
type Machine struct {
	Name string

	env      *Env
	cfg      config
	evidence *artifacts.Dir
	logf     func(string)
	tmp      string

	mu      sync.Mutex
	qemu    *qemu.Cmd
	console *console.Stream
	agent   *agent.Client
	conFile *os.File
	boots   int
	taken   int // crash reports a test has claimed with TakeCrashes
	crashes []console.Report
	// uploaded maps module files put into the guest's /tmp during this
	// boot to the host file they came from.
	uploaded map[string]string

	booted   time.Time
	bootTook time.Duration
}

var guestSeq atomic.Int32

// Start boots a guest and waits for its agent. Evidence goes to ev; console
// lines to logf (may be nil).
func Start(ctx context.Context, env *Env, ev *artifacts.Dir, logf func(string), opts ...Option) (*Machine, error) {
	n := guestSeq.Add(1)
	cfg := config{
		name:      "guest" + strconv.Itoa(int(n)),
		kernel:    env.Kernel,
		memoryMiB: 1024,
		cpus:      1,
	}
	for _, o := range opts {
		o(&cfg)
	}
	tmp, err := makePrivateDir(cfg.name)
	if err != nil {
		return nil, err
	}
	m := &Machine{Name: cfg.name, env: env, cfg: cfg, evidence: ev, logf: logf, tmp: tmp}
	track(m)
	if err := m.boot(ctx); err != nil {
		m.shutdown(ctx)
		return nil, err
	}
	return m, nil
}

func (m *Machine) initrd() (string, error) {
	if len(m.cfg.files) == 0 {
		return m.env.Image, nil
	}
	// The kernel unpacks concatenated cpio archives in order, so the
	// guest's own files go after the shared image without rebuilding it.
	extra := initramfs.New()
	for _, f := range m.cfg.files {
		extra.AddFile(f.guest, f.host, f.mode)
	}
	path := filepath.Join(m.tmp, "initramfs.cpio")
	out, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer out.Close()
	base, err := os.Open(m.env.Image)
	if err != nil {
		return "", err
	}
	defer base.Close()
	if _, err := io.Copy(out, base); err != nil {
		return "", err
	}
	if err := extra.WriteCPIO(out); err != nil {
		return "", fmt.Errorf("guest %s: extra files: %w", m.Name, err)
	}
	return path, out.Close()
}

func (m *Machine) qemuConfig(initrd string) *qemu.Config {
	c := &qemu.Config{
		Name:        m.Name,
		Kernel:      m.cfg.kernel.Image,
		Initrd:      initrd,
		MemoryMiB:   m.cfg.memoryMiB,
		CPUs:        m.cfg.cpus,
		Accel:       m.env.Accel,
		AgentSocket: filepath.Join(m.tmp, "agent.sock"),
		Append: []string{
			"console=ttyS0", "loglevel=7", "printk.devkmsg=on",
			// A panic must end the guest at once (and with -no-reboot,
			// QEMU), never leave a test waiting for a dead agent.
			"panic=-1",
		},
	}
	args := guest.BootArgs{Hostname: m.Name, Mounts: m.cfg.mounts}
	for i, n := range m.cfg.nics {
		c.NICs = append(c.NICs, qemu.NIC{MAC: macFor(m.Name, i), Socket: n.link.hub.Path()})
		args.Nets = append(args.Nets, guest.Net{Iface: fmt.Sprintf("eth%d", i), Addr: n.addr})
	}
	for _, d := range m.cfg.disks {
		c.Disks = append(c.Disks, qemu.Disk{Path: d.path, ReadOnly: d.readOnly})
	}
	c.Append = append(c.Append, args.Encode()...)
	c.Append = append(c.Append, m.cfg.kernelArgs...)
	return c
}

// macFor gives each NIC a stable, locally administered address.
func macFor(name string, i int) string {
	h := uint32(2166136261)
	for _, b := range []byte(name) {
		h = (h ^ uint32(b)) * 16777619
	}
	return fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", byte(h>>16), byte(h>>8), byte(h), byte(i))
}

func (m *Machine) boot(ctx context.Context) error {
	initrd, err := m.initrd()
	if err != nil {
		return err
	}
	qc := m.qemuConfig(initrd)
	m.boots++
	suffix := ""
	if m.boots > 1 {
		suffix = fmt.Sprintf(".boot%d", m.boots)
	}
	if err := m.evidence.WriteFile(m.Name+suffix+".qemu.txt", []byte(qc.CommandLine()+"\n")); err != nil {
		return err
	}
	conFile, err := m.evidence.Create(m.Name + suffix + ".console.txt")
	if err != nil {
		return err
	}
	start := time.Now()
	stream := console.NewStream(m.Name,
		console.WithFile(conFile),
		console.WithStart(start),
		console.WithLog(func(line string) {
			if m.logf != nil {
				m.logf(line)
			}
		}),
		console.WithReport(func(r console.Report) {
			m.mu.Lock()
			m.crashes = append(m.crashes, r)
			m.mu.Unlock()
		}))
	q := qemu.Command(qc, stream)

	release, err := bootSlot(ctx, m.env)
	if err != nil {
		conFile.Close()
		return err
	}
	defer release()
	if err := q.Start(); err != nil {
		conFile.Close()
		return err
	}
	m.mu.Lock()
	m.qemu, m.console, m.conFile = q, stream, conFile
	m.uploaded = map[string]string{}
	m.mu.Unlock()

	bootCtx, cancel := context.WithTimeout(ctx, bootTimeout(ctx))
	defer cancel()
	a, err := m.connect(bootCtx, q, qc.AgentSocket)
	if err != nil {
		return m.failure("boot", err)
	}
	m.mu.Lock()
	m.agent = a
	m.booted = time.Now()
	m.bootTook = time.Since(start)
	m.mu.Unlock()
	recordBoot(m.bootTook)
	if m.logf != nil {
		m.logf(fmt.Sprintf("%s: agent ready after %.2fs (%s, %s)", m.Name, m.bootTook.Seconds(), m.cfg.kernel.Release, m.env.Accel))
	}
	return nil
}

// connect dials the agent's socket (QEMU creates it as it starts) and waits
// for its hello, failing early if QEMU exits.
func (m *Machine) connect(ctx context.Context, q *qemu.Cmd, sock string) (*agent.Client, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-q.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	var conn net.Conn
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-ctx.Done():
			return nil, m.whyDone(ctx, "QEMU's agent socket never appeared")
		case <-time.After(20 * time.Millisecond):
		}
	}
	a, err := agent.Dial(ctx, conn)
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, m.whyDone(ctx, "the guest agent never said hello")
		}
		return nil, err
	}
	return a, nil
}

// whyDone explains why a wait for the guest ended: QEMU exited (and how),
// or the deadline passed.
func (m *Machine) whyDone(ctx context.Context, what string) error {
	m.mu.Lock()
	q := m.qemu
	m.mu.Unlock()
	if q != nil {
		if exited, err := q.Exited(); exited {
			return fmt.Errorf("%s: QEMU exited (%v)", what, err)
		}
	}
	return fmt.Errorf("%s: %w", what, ctx.Err())
}

// failure wraps err with what a person needs to see: crash titles and the
// console's last lines.
func (m *Machine) failure(op string, err error) error {
	var b strings.Builder
	fmt.Fprintf(&b, "guest %s: %s: %v", m.Name, op, err)
	m.mu.Lock()
	crashes := append([]console.Report(nil), m.crashes...)
	stream := m.console
	m.mu.Unlock()
	for _, c := range crashes {
		fmt.Fprintf(&b, "\nkernel crash: %s", c.Title)
	}
	if stream != nil {
		fmt.Fprintf(&b, "\nlast console lines:\n  %s", strings.Join(stream.Tail(25), "\n  "))
	}
	fmt.Fprintf(&b, "\nevidence: %s", m.evidence.Path())
	return errors.New(b.String())
}

// Agent is the guest's agent client.
func (m *Machine) Agent() *agent.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.agent
}

// BootTime is how long the last boot took from QEMU start to agent ready.
func (m *Machine) BootTime() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bootTook
}

// Evidence is the folder the guest's evidence goes to.
func (m *Machine) Evidence() *artifacts.Dir { return m.evidence }

// Crashes returns every kernel crash report seen on the console so far.
func (m *Machine) Crashes() []console.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]console.Report(nil), m.crashes...)
}

// TakeCrashes returns the crash reports not yet taken and marks them as
// handled: a test that provokes a crash on purpose claims it, so the
// harness does not fail the test for it.
func (m *Machine) TakeCrashes() []console.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := append([]console.Report(nil), m.crashes[m.taken:]...)
	m.taken = len(m.crashes)
	return r
}

func (m *Machine) untakenCrashes() []console.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]console.Report(nil), m.crashes[m.taken:]...)
}

// Exited reports whether the guest's QEMU has ended.
func (m *Machine) Exited() bool {
	m.mu.Lock()
	q := m.qemu
	m.mu.Unlock()
	if q == nil {
		return true
	}
	done, _ := q.Exited()
	return done
}

// Exec runs a program in the guest. A zero Timeout means the default
// command deadline scaled to this machine's speed. An error means the
// guest did not answer; a program that failed is a Result with its exit code.
func (m *Machine) Exec(ctx context.Context, cmd agent.Cmd) (*agent.Result, error) {
	if cmd.Timeout == 0 {
		cmd.Timeout = Scale(DefaultCommandTimeout)
	}
	// The agent needs a moment beyond the program's own deadline to kill
	// it and answer.
	cctx, cancel := m.callContext(ctx, cmd.Timeout+Scale(5*time.Second))
	defer cancel()
	r, err := m.Agent().Run(cctx, cmd)
	if err != nil {
		return nil, m.failure("run "+strings.Join(cmd.Argv, " "), err)
	}
	return r, nil
}

// callContext bounds an agent call by d and by the guest's life.
func (m *Machine) callContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, d)
	m.mu.Lock()
	q := m.qemu
	m.mu.Unlock()
	if q == nil {
		return ctx, cancel
	}
	go func() {
		select {
		case <-q.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Call runs an agent operation bounded by the scaled default deadline and
// the guest's life, wrapping a failure with the guest's console.
func (m *Machine) Call(ctx context.Context, op string, f func(ctx context.Context, a *agent.Client) error) error {
	cctx, cancel := m.callContext(ctx, Scale(DefaultCommandTimeout))
	defer cancel()
	if err := f(cctx, m.Agent()); err != nil {
		if cctx.Err() != nil {
			return m.failure(op, fmt.Errorf("guest stopped answering: %w", err))
		}
		return fmt.Errorf("guest %s: %s: %w", m.Name, op, err)
	}
	return nil
}

// Reboot powers the guest off and boots it again with the same settings
// (and the same disks), like a reboot but with a fresh QEMU.
func (m *Machine) Reboot(ctx context.Context) error {
	m.stop(ctx)
	return m.boot(ctx)
}

// saveEvidence writes what the guest can still tell about itself.
func (m *Machine) saveEvidence(ctx context.Context) {
	a := m.Agent()
	if a == nil || m.Exited() {
		return
	}
	cctx, cancel := m.callContext(ctx, Scale(10*time.Second))
	defer cancel()
	if recs, _, err := a.KernelLog(cctx, 0); err == nil {
		var b strings.Builder
		for _, r := range recs {
			fmt.Fprintf(&b, "[%5d.%06d] %s\n", r.Usec/1e6, r.Usec%1e6, r.Text)
		}
		m.evidence.WriteFile(m.Name+".dmesg.txt", []byte(b.String()))
	}
	if tr, err := a.ReadFile(cctx, "/sys/kernel/tracing/trace"); err == nil && len(tr) > 0 {
		m.evidence.WriteFile(m.Name+".trace.txt", tr)
	}
}

// stop powers the guest off (killing QEMU if it does not go) and closes
// the console.
func (m *Machine) stop(ctx context.Context) {
	m.mu.Lock()
	q, a, stream, f := m.qemu, m.agent, m.console, m.conFile
	m.qemu, m.agent = nil, nil
	m.mu.Unlock()
	if q != nil {
		// Only a guest that agreed to power off is given time to do so;
		// one that cannot answer is killed at once.
		asked := false
		if done, _ := q.Exited(); a != nil && !done {
			cctx, cancel := context.WithTimeout(ctx, Scale(5*time.Second))
			asked = a.PowerOff(cctx) == nil
			cancel()
		}
		if asked {
			select {
			case <-q.Done():
			case <-time.After(Scale(10 * time.Second)):
			}
		}
		q.Kill(2 * time.Second)
	}
	if a != nil {
		a.Close()
	}
	if stream != nil {
		stream.Close()
	}
	if f != nil {
		f.Close()
	}
}

// shutdown stops the guest for good and removes its private directory.
func (m *Machine) shutdown(ctx context.Context) {
	m.stop(ctx)
	os.RemoveAll(m.tmp)
	untrack(m)
}

// Close powers the guest off and releases everything it holds.
func (m *Machine) Close() error {
	m.shutdown(context.Background())
	return nil
}
