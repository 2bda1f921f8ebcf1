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
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"layer45/harness/agent"
	"layer45/harness/artifacts"
	"layer45/harness/console"
	"layer45/harness/infra"
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
	hello   agent.Hello
	conFile *os.File
	boots   int
	crashes []crash
	// owner is the test running on the guest (Boot's, or Use's).
	owner testing.TB
	// firstCrash and crashedIn: the first report's title and its test.
	firstCrash, crashedIn string
	// oops is closed, and oopsed set, at the first fatal report.
	oops   chan struct{}
	oopsed *CrashError
	// uploaded maps module files put into the guest's /tmp during this
	// boot to the host file they came from.
	uploaded map[string]string

	booted      time.Time
	bootTook    time.Duration
	resumedFrom string // the state file of the last start, if restored
}

var guestSeq atomic.Int32

// Start boots a guest and waits for its agent. Evidence goes to ev; console
// lines to logf (may be nil).
func Start(ctx context.Context, env *Env, ev *artifacts.Dir, logf func(string), opts ...Option) (*Machine, error) {
	return start(ctx, env, ev, logf, nil, opts)
}

// start boots a guest whose kernel reports are charged to owner.
func start(ctx context.Context, env *Env, ev *artifacts.Dir, logf func(string), owner testing.TB, opts []Option) (*Machine, error) {
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
		return nil, infra.Wrap("guest "+cfg.name, err)
	}
	m := &Machine{Name: cfg.name, env: env, cfg: cfg, evidence: ev, logf: logf, tmp: tmp, owner: owner}
	track(m)
	if err := m.boot(ctx); err != nil {
		m.shutdown(ctx)
		return nil, err
	}
	return m, nil
}

// baseConfig is what every guest's QEMU has, booted or restored.
func (m *Machine) baseConfig(initrd string) *qemu.Config {
	return &qemu.Config{
		Name:        m.Name,
		Kernel:      m.bootImage(),
		Initrd:      initrd,
		MemoryMiB:   m.cfg.memoryMiB,
		CPUs:        m.cfg.cpus,
		Accel:       m.env.Accel,
		AgentSocket: filepath.Join(m.tmp, "agent.sock"),
		Append: []string{
			"console=ttyS0", "loglevel=" + strconv.Itoa(guest.BootLogLevel), "printk.devkmsg=on",
			// A panic must end the guest at once (and with -no-reboot,
			// QEMU), never leave a test waiting for a dead agent.
			"panic=-1",
		},
	}
}

// bootImage is the kernel file QEMU loads.
func (m *Machine) bootImage() string {
	if m.cfg.bzImage {
		return m.cfg.kernel.Image
	}
	return m.env.BootImage
}

// bootConfig is the QEMU configuration of a guest that boots: its identity
// is on the kernel command line.
func (m *Machine) bootConfig() *qemu.Config {
	c := m.baseConfig(m.env.Image)
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

// restoreConfig is the QEMU configuration of a guest resumed from the state
// file: the snapshot's, plugged into the guest's own links.
func (m *Machine) restoreConfig(state string) *qemu.Config {
	var sockets []string
	for _, n := range m.cfg.nics {
		sockets = append(sockets, n.link.hub.Path())
	}
	c := m.anonymousConfig(sockets)
	c.Incoming = state
	c.MemoryFile = filepath.Join(filepath.Dir(state), snapshotMemory)
	c.QMPSocket = filepath.Join(m.tmp, "qmp.sock")
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
	m.boots++
	restore := m.restorable()
	qc, how := m.bootConfig(), "booted"
	if restore {
		state, err := m.snapshot(ctx)
		if err != nil {
			return m.failure("boot", err, false)
		}
		qc = m.restoreConfig(state)
		how = "restored from " + state + " (the console of the boot it was saved after: " + filepath.Join(filepath.Dir(state), snapshotConsole) + ");" +
			" QEMU waits for it, loaded over QMP with migrate-set-capabilities x-ignore-shared and migrate-incoming"
	}
	suffix := ""
	if m.boots > 1 {
		suffix = fmt.Sprintf(".boot%d", m.boots)
	}
	if err := m.evidence.WriteFile(m.Name+suffix+".qemu.txt", []byte("# "+how+"\n"+qc.CommandLine()+"\n")); err != nil {
		return infra.Wrap("guest "+m.Name+": evidence", err)
	}
	conFile, err := m.evidence.Create(m.Name + suffix + ".console.txt")
	if err != nil {
		return infra.Wrap("guest "+m.Name+": evidence", err)
	}
	if !restore {
		// Boots take turns; a restore needs little CPU and goes at once.
		release, err := bootSlot(ctx, m.env)
		if err != nil {
			conFile.Close()
			return m.failure("boot", err, false)
		}
		defer release()
	}
	// Timed from here: waiting for another guest's boot is not this one's.
	start := time.Now()
	stream := console.NewStream(m.Name,
		console.WithFile(conFile),
		console.WithStart(start),
		console.WithLog(func(line string) {
			if m.logf != nil {
				m.logf(line)
			}
		}),
		console.WithReport(m.recordCrash))
	q := qemu.Command(qc, stream)
	if err := q.Start(); err != nil {
		conFile.Close()
		return infra.Wrap("guest "+m.Name+": start QEMU", err)
	}
	m.mu.Lock()
	m.qemu, m.console, m.conFile = q, stream, conFile
	m.uploaded = map[string]string{}
	// A new kernel: calls wait for its oops, not a former boot's.
	m.oops, m.oopsed = make(chan struct{}), nil
	m.mu.Unlock()

	bootCtx, cancel := context.WithTimeout(ctx, bootTimeout(ctx))
	defer cancel()
	var dialOpts []agent.Option
	if restore {
		if err := m.resume(bootCtx, q, qc); err != nil {
			return m.failure("restore", err, true)
		}
		// A resumed agent said hello to the host that saved it: ask.
		dialOpts = append(dialOpts, agent.WithHelloRetry(20*time.Millisecond))
	}
	a, err := m.connect(bootCtx, q, qc.AgentSocket, dialOpts...)
	if err != nil {
		return m.failure("boot", err, true)
	}
	if restore {
		if err := m.setUp(bootCtx, a); err != nil {
			a.Close()
			return m.failure("set up the restored guest", err, true)
		}
	}
	m.mu.Lock()
	m.agent = a
	m.hello = a.Hello()
	m.booted = time.Now()
	m.bootTook = time.Since(start)
	m.resumedFrom = qc.Incoming
	m.mu.Unlock()
	word := "agent ready"
	if restore {
		recordRestore(m.bootTook)
		word = "restored from a snapshot, agent ready"
	} else {
		recordBoot(m.bootTook)
	}
	if m.logf != nil {
		m.logf(fmt.Sprintf("%s: %s after %.2fs (%s, %s)", m.Name, word, m.bootTook.Seconds(), m.cfg.kernel.Release, m.env.Accel))
	}
	return nil
}

// resume has the QEMU started with qc load its state.
func (m *Machine) resume(ctx context.Context, q *qemu.Cmd, qc *qemu.Config) error {
	ctx, cancel := m.untilDone(ctx, 0, q)
	defer cancel()
	qmp, err := qemu.DialQMP(ctx, qc.QMPSocket)
	if err != nil {
		return err
	}
	defer qmp.Close()
	return qmp.Resume(ctx, qc.Incoming)
}

// connect dials the agent's socket (QEMU creates it as it starts) and waits
// for its hello, failing early if QEMU exits.
func (m *Machine) connect(ctx context.Context, q *qemu.Cmd, sock string, opts ...agent.Option) (*agent.Client, error) {
	ctx, cancel := m.untilDone(ctx, 0, q)
	defer cancel()
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
	a, err := agent.Dial(ctx, conn, opts...)
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, m.whyDone(ctx, "the guest agent never said hello")
		}
		// A lost connection is usually QEMU ending: say how it ended.
		select {
		case <-q.Done():
			_, qerr := q.Exited()
			return nil, fmt.Errorf("%w; QEMU exited (%v): %w", err, qerr, ErrStopped)
		case <-time.After(time.Second):
		}
		return nil, err
	}
	return a, nil
}

// untilDone is ctx bounded by d (when not 0) and ended as soon as QEMU
// exits or the guest's kernel oopses: nothing will answer after that.
func (m *Machine) untilDone(ctx context.Context, d time.Duration, q *qemu.Cmd) (context.Context, context.CancelFunc) {
	var cancel context.CancelFunc
	if d > 0 {
		ctx, cancel = context.WithTimeout(ctx, d)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	m.mu.Lock()
	oops := m.oops
	m.mu.Unlock()
	go func() {
		select {
		case <-q.Done():
			cancel()
		case <-oops:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// whyDone explains why a wait for the guest ended: QEMU exited (and how),
// or the deadline passed.
func (m *Machine) whyDone(ctx context.Context, what string) error {
	m.mu.Lock()
	q := m.qemu
	m.mu.Unlock()
	if q != nil {
		if exited, err := q.Exited(); exited {
			return fmt.Errorf("%s: QEMU exited (%v): %w", what, err, ErrStopped)
		}
	}
	if c := m.crashCause(); c != nil {
		return fmt.Errorf("%s: %w", what, c)
	}
	return fmt.Errorf("%s: %w", what, ctx.Err())
}

// failure is err as a *GuestError with what a person needs to see: crash
// titles and, when the guest stopped answering or never came up, the
// console's last lines.
func (m *Machine) failure(op string, err error, withConsole bool) error {
	m.mu.Lock()
	e := &GuestError{Guest: m.Name, Op: op, Err: err, Evidence: m.evidence.Path()}
	for _, c := range m.crashes {
		e.Crashes = append(e.Crashes, c.Title)
	}
	stream := m.console
	m.mu.Unlock()
	if withConsole && stream != nil {
		e.Console = stream.Tail(25)
	}
	return e
}

// Hello is what the guest's agent said when it came up at the last boot:
// kernel release and the outcome of every boot step.
func (m *Machine) Hello() agent.Hello {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hello
}

// Restored says whether the guest was resumed from a snapshot at its last
// start rather than booted.
func (m *Machine) Restored() bool { return m.Snapshot() != "" }

// Snapshot is the state file the guest was resumed from at its last start,
// "" if it booted. The console of the boot it was saved after is
// SnapshotConsole.
func (m *Machine) Snapshot() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.resumedFrom
}

// SnapshotConsole is the console of the boot the guest's snapshot was saved
// after ("" if it booted): its own console starts at the restore.
func (m *Machine) SnapshotConsole() string {
	if s := m.Snapshot(); s != "" {
		return filepath.Join(filepath.Dir(s), snapshotConsole)
	}
	return ""
}

// BootTime is how long the last boot (or restore) took from QEMU start to
// agent ready.
func (m *Machine) BootTime() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bootTook
}

// Evidence is the folder the guest's evidence goes to.
func (m *Machine) Evidence() *artifacts.Dir { return m.evidence }

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

// do runs one agent operation bounded by d (0: the scaled default command
// deadline) and by the guest's life. Every failure is a *GuestError; one
// where the guest did not answer in time carries its console.
func (m *Machine) do(ctx context.Context, op string, d time.Duration, f func(ctx context.Context, a *agent.Client) error) error {
	m.mu.Lock()
	a, q := m.agent, m.qemu
	m.mu.Unlock()
	if a == nil || q == nil {
		return m.failure(op, ErrStopped, false)
	}
	if d == 0 {
		d = Scale(DefaultCommandTimeout)
	}
	cctx, cancel := m.untilDone(ctx, d, q)
	defer cancel()
	err := f(cctx, a)
	switch {
	case err == nil:
		return nil
	case cctx.Err() != nil && m.crashCause() != nil:
		return m.failure(op, fmt.Errorf("%w (%w)", m.crashCause(), err), true)
	case cctx.Err() != nil:
		if exited, qerr := q.Exited(); exited {
			return m.failure(op, fmt.Errorf("QEMU exited (%v) during the call: %w", qerr, errors.Join(ErrStopped, err)), true)
		}
		return m.failure(op, fmt.Errorf("guest stopped answering: %w", err), true)
	default:
		return m.failure(op, err, false)
	}
}

// Reboot powers the guest off and boots it again with the same settings
// (and the same disks), like a reboot but with a fresh QEMU.
func (m *Machine) Reboot(ctx context.Context) error {
	m.stop(ctx)
	return m.boot(ctx)
}

// SaveEvidence writes what the guest can still tell about itself into its
// evidence folder: its kernel log (NAME.dmesg.txt) and trace buffer
// (NAME.trace.txt). Boot does it for a failed test.
func (m *Machine) SaveEvidence(ctx context.Context) {
	if m.Exited() {
		return
	}
	if recs, _, err := m.KernelLog(ctx, 0); err == nil {
		var b strings.Builder
		for _, r := range recs {
			fmt.Fprintf(&b, "[%5d.%06d] %s\n", r.Usec/1e6, r.Usec%1e6, r.Text)
		}
		m.evidence.WriteFile(m.Name+".dmesg.txt", []byte(b.String()))
	}
	if tr, err := m.ReadFile(ctx, "/sys/kernel/tracing/trace"); err == nil && len(tr) > 0 {
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
		// Only a guest with a disk is powered off, so that what it wrote
		// reaches the disk; a guest without one has nothing to lose, and
		// under TCG an orderly power-off costs most of a second. A guest
		// that cannot answer is killed at once.
		asked := false
		if done, _ := q.Exited(); a != nil && !done && len(m.cfg.disks) > 0 {
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
