package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"layer45/harness/agent"
	"layer45/harness/infra"
	"layer45/harness/kernels"
	"layer45/harness/modules"
	"layer45/harness/repo"
	"layer45/vmimages/control"
	"layer45/vmimages/guest"
	"layer45/vmimages/traffic"
)

// Every operation on a guest comes in two forms: a method taking a context
// and returning an error (a *GuestError, or an *infra.Error when the harness
// itself failed), and a Must… helper taking a testing.TB that fails the
// test with that error.

// QEMUPid is the guest's QEMU process id (tests freeze it to simulate a
// hung guest); 0 once it has stopped.
func (m *Machine) QEMUPid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.qemu == nil {
		return 0
	}
	return m.qemu.Pid()
}

// Kernel is the kernel the guest booted.
func (m *Machine) Kernel() *kernels.Kernel { return m.cfg.kernel }

// Exec runs a program in the guest. A zero Timeout means the default
// command deadline scaled to this machine's speed. An error means the guest
// did not answer; a program that failed is a Result with its exit code.
func (m *Machine) Exec(ctx context.Context, cmd agent.Cmd) (*agent.Result, error) {
	if cmd.Timeout == 0 {
		cmd.Timeout = Scale(DefaultCommandTimeout)
	}
	var r *agent.Result
	// The agent needs a moment beyond the program's own deadline to kill
	// it and answer.
	err := m.do(ctx, "run "+strings.Join(cmd.Argv, " "), cmd.Timeout+Scale(5*time.Second), func(ctx context.Context, a *agent.Client) error {
		var err error
		r, err = a.Run(ctx, cmd)
		return err
	})
	return r, err
}

// Run runs argv in the guest and returns its standard output; a non-zero
// exit is an error wrapping *agent.ExitError.
func (m *Machine) Run(ctx context.Context, argv ...string) (string, error) {
	r, err := m.Exec(ctx, agent.Cmd{Argv: argv})
	if err != nil {
		return "", err
	}
	if err := r.Err(); err != nil {
		return string(r.Stdout), m.failure("run "+strings.Join(argv, " "), err, false)
	}
	return string(r.Stdout), nil
}

// MustRun is Run that fails t.
func (m *Machine) MustRun(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := m.Run(context.Background(), argv...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// Spawn starts a program in the background in the guest (a server, say).
// The process is stopped when the guest powers off.
func (m *Machine) Spawn(ctx context.Context, argv ...string) (*Process, error) {
	var p *agent.Process
	err := m.do(ctx, "start "+strings.Join(argv, " "), 0, func(ctx context.Context, a *agent.Client) error {
		var err error
		p, err = a.Start(ctx, agent.Cmd{Argv: argv})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Process{Process: p, m: m}, nil
}

// MustSpawn is Spawn that fails t.
func (m *Machine) MustSpawn(t testing.TB, argv ...string) *Process {
	t.Helper()
	p, err := m.Spawn(context.Background(), argv...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return p
}

// Process is a program started with Spawn. Waiting for it or signalling
// it ends, like every Machine call, as soon as the guest's kernel oopses
// or QEMU exits: a process whose thread died in an oops never exits.
type Process struct {
	*agent.Process
	m *Machine
}

func (p *Process) what(verb string) string {
	return verb + " " + strings.Join(p.Argv, " ")
}

// Wait waits up to timeout for the process to end (see agent.Process.Wait).
func (p *Process) Wait(ctx context.Context, timeout time.Duration) (*agent.Result, error) {
	var r *agent.Result
	bound := time.Duration(0)
	if timeout > 0 {
		bound = timeout + Scale(DefaultCommandTimeout)
	} else if dl, ok := ctx.Deadline(); ok {
		bound = time.Until(dl)
	} else {
		bound = 24 * time.Hour
	}
	err := p.m.do(ctx, p.what("wait for"), bound, func(ctx context.Context, _ *agent.Client) error {
		var err error
		r, err = p.Process.Wait(ctx, timeout)
		return err
	})
	return r, err
}

// Signal sends sig to the process's group and waits for it to end (see
// agent.Process.Signal).
func (p *Process) Signal(ctx context.Context, sig syscall.Signal) (*agent.Result, error) {
	var r *agent.Result
	err := p.m.do(ctx, p.what("signal"), Scale(30*time.Second+DefaultCommandTimeout), func(ctx context.Context, _ *agent.Client) error {
		var err error
		r, err = p.Process.Signal(ctx, sig)
		return err
	})
	return r, err
}

// Stop ends the process: SIGTERM, then SIGKILL (see agent.Process.Stop).
func (p *Process) Stop(ctx context.Context) (*agent.Result, error) {
	var r *agent.Result
	err := p.m.do(ctx, p.what("stop"), 0, func(ctx context.Context, _ *agent.Client) error {
		var err error
		r, err = p.Process.Stop(ctx)
		return err
	})
	return r, err
}

// ReadFile reads a file in the guest; a missing file is an error for which
// errors.Is(err, fs.ErrNotExist) holds.
func (m *Machine) ReadFile(ctx context.Context, file string) ([]byte, error) {
	var b []byte
	err := m.do(ctx, "read "+file, 0, func(ctx context.Context, a *agent.Client) error {
		var err error
		b, err = a.ReadFile(ctx, file)
		return err
	})
	return b, err
}

// Exists reports whether a file exists in the guest; an error means the
// guest could not say.
func (m *Machine) Exists(ctx context.Context, file string) (bool, error) {
	_, err := m.ReadFile(ctx, file)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// WriteFile writes a file in the guest (creating its directories).
func (m *Machine) WriteFile(ctx context.Context, file string, data []byte, mode os.FileMode) error {
	return m.do(ctx, "write "+file, 0, func(ctx context.Context, a *agent.Client) error {
		return a.PutFile(ctx, file, data, mode)
	})
}

// MustWriteFile is WriteFile that fails t.
func (m *Machine) MustWriteFile(t testing.TB, file string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := m.WriteFile(context.Background(), file, data, mode); err != nil {
		t.Fatalf("%v", err)
	}
}

// Sync flushes the guest's file systems (before a reboot, say).
func (m *Machine) Sync(ctx context.Context) error {
	return m.do(ctx, "sync", 0, func(ctx context.Context, a *agent.Client) error { return a.Sync(ctx) })
}

// KernelLog returns the kernel log records after cursor since, and the
// cursor to pass next time.
func (m *Machine) KernelLog(ctx context.Context, since uint64) ([]agent.LogRecord, uint64, error) {
	var recs []agent.LogRecord
	next := since
	err := m.do(ctx, "read the kernel log", 0, func(ctx context.Context, a *agent.Client) error {
		var err error
		recs, next, err = a.KernelLog(ctx, since)
		return err
	})
	return recs, next, err
}

// Traffic runs l45net as a client and returns what the application saw and
// how long the program ran (measured by the guest's agent). l45net failing
// is an error too.
func (m *Machine) Traffic(ctx context.Context, c traffic.Client) (*traffic.Report, time.Duration, error) {
	r, err := m.Exec(ctx, agent.Cmd{Argv: c.Args()})
	if err != nil {
		return nil, 0, err
	}
	if err := r.Err(); err != nil {
		return nil, 0, m.failure("traffic", err, false)
	}
	rep, err := traffic.ParseReport(r.Stdout)
	if err != nil {
		return nil, 0, m.failure("traffic", err, false)
	}
	return rep, r.Duration, nil
}

// MustTraffic is Traffic that fails t.
func (m *Machine) MustTraffic(t testing.TB, c traffic.Client) *traffic.Report {
	t.Helper()
	rep, _, err := m.Traffic(context.Background(), c)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return rep
}

// Control is a client for Layer 4.5's control interface in this guest.
func (m *Machine) Control() control.Client {
	return control.Client{Send: func(ctx context.Context, req string, flags ...string) ([]byte, error) {
		argv := append(append([]string{guest.L45ctl}, flags...), req)
		out, err := m.Run(ctx, argv...)
		return []byte(out), err
	}}
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*modules.Set{}
)

// BuildModules builds the repository's kernel/ tree for k (cached). A tree
// that does not compile is an *infra.Error: no rule can be judged then.
func BuildModules(ctx context.Context, env *Env, k *kernels.Kernel) (*modules.Set, error) {
	buildsMu.Lock()
	defer buildsMu.Unlock()
	if s, ok := builds[k.Image]; ok {
		return s, nil
	}
	tree, err := repo.KernelTree()
	if err != nil {
		return nil, infra.Wrap("build modules", err)
	}
	s, err := modules.Build(ctx, env.Cache, k, tree)
	if err != nil {
		return nil, infra.Wrap("build modules", err)
	}
	builds[k.Image] = s
	return s, nil
}

// RequireModules returns Layer 4.5 and the customization modules built for
// m's kernel, failing t when they do not compile.
func RequireModules(t testing.TB, m *Machine) *modules.Set {
	t.Helper()
	s, err := BuildModules(context.Background(), m.env, m.cfg.kernel)
	if err != nil {
		Fatal(t, err)
	}
	return s
}

// guestModuleDir is where LoadModule puts .ko files in the guest.
const guestModuleDir = "/tmp/modules"

// LoadModule copies the named module of s into the guest and loads it with
// params. A refused load (the module's init failed or crashed, a bad
// parameter) is an error for which errors.As finds *agent.ModuleError with
// the kernel's errno and log lines.
func (m *Machine) LoadModule(ctx context.Context, s *modules.Set, name, params string) error {
	ko, err := s.Path(name)
	if err != nil {
		return infra.Wrap("load "+name, err)
	}
	file := path.Join(guestModuleDir, name+".ko")
	// Load/unload loops load the same file many times: copy it once per
	// boot (a build's path in the cache names its content).
	m.mu.Lock()
	there := m.uploaded[file] == ko
	m.mu.Unlock()
	if !there {
		data, err := moduleWithoutDebugInfo(ctx, ko)
		if err != nil {
			return infra.Wrap("load "+name, err)
		}
		if err := m.WriteFile(ctx, file, data, 0o644); err != nil {
			return err
		}
		m.mu.Lock()
		m.uploaded[file] = ko
		m.mu.Unlock()
	}
	return m.do(ctx, "load "+name, 0, func(ctx context.Context, a *agent.Client) error {
		_, err := a.LoadModule(ctx, file, params)
		return err
	})
}

var (
	strippedMu sync.Mutex
	stripped   = map[string][]byte{}
)

// moduleWithoutDebugInfo is the module file ko without its DWARF sections
// (objcopy --strip-debug), made once per process: a core built against a
// Debian kernel carries megabytes of them, which the guest's kernel never
// reads (oopses name functions from the symbol table, which stays) and
// which take most of a second per guest to copy in under TCG. The file in
// the cache keeps them, for decoding reports on the host.
func moduleWithoutDebugInfo(ctx context.Context, ko string) ([]byte, error) {
	strippedMu.Lock()
	defer strippedMu.Unlock()
	if data, ok := stripped[ko]; ok {
		return data, nil
	}
	out, err := os.CreateTemp("", "l45-stripped-*.ko")
	if err != nil {
		return nil, err
	}
	out.Close()
	defer os.Remove(out.Name())
	if msg, err := exec.CommandContext(ctx, "objcopy", "--strip-debug", ko, out.Name()).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("objcopy --strip-debug %s (binutils, installed by make setup): %w: %s", ko, err, bytes.TrimSpace(msg))
	}
	data, err := os.ReadFile(out.Name())
	if err != nil {
		return nil, err
	}
	stripped[ko] = data
	return data, nil
}

// MustLoadModule is LoadModule that fails t.
func (m *Machine) MustLoadModule(t testing.TB, s *modules.Set, name, params string) {
	t.Helper()
	if err := m.LoadModule(context.Background(), s, name, params); err != nil {
		Fatal(t, err)
	}
}

// UnloadModule removes a module; a refusal is an error for which errors.As
// finds *agent.ModuleError.
func (m *Machine) UnloadModule(ctx context.Context, name string) error {
	return m.do(ctx, "unload "+name, 0, func(ctx context.Context, a *agent.Client) error {
		_, err := a.UnloadModule(ctx, name)
		return err
	})
}

// MustUnloadModule is UnloadModule that fails t.
func (m *Machine) MustUnloadModule(t testing.TB, name string) {
	t.Helper()
	if err := m.UnloadModule(context.Background(), name); err != nil {
		t.Fatalf("%v", err)
	}
}

// WaitFor polls cond until it holds or the scaled timeout passes.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Scale(timeout))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", Scale(timeout), what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Listening reports whether a socket in the guest is bound to port (UDP) or
// listening on it (TCP).
func (m *Machine) Listening(ctx context.Context, proto string, port int) (bool, error) {
	b, err := m.ReadFile(ctx, "/proc/net/"+proto)
	if err != nil {
		return false, err
	}
	want := fmt.Sprintf(":%04X ", port)
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		// local_address is field 1; TCP state 0A is LISTEN.
		if len(f) > 3 && strings.HasSuffix(f[1]+" ", want) && (proto == "udp" || f[3] == "0A") {
			return true, nil
		}
	}
	return false, nil
}

// MustWaitListening waits until a socket in the guest is bound to port
// (UDP) or listening on it (TCP): a server started in the background is
// ready only then, and a client sent earlier would meet a closed port.
func (m *Machine) MustWaitListening(t testing.TB, proto string, port int) {
	t.Helper()
	WaitFor(t, fmt.Sprintf("%s port %d in guest %s", proto, port, m.Name), 30*time.Second, func() bool {
		ok, err := m.Listening(context.Background(), proto, port)
		if err != nil {
			t.Fatalf("%v", err)
		}
		return ok
	})
}

// kmemleakFile is the leak detector's interface on debug kernels.
const kmemleakFile = "/sys/kernel/debug/kmemleak"

// Leaks asks the kernel's leak detector (debug kernels only) for leaks: it
// scans twice, as kmemleak wants objects to stay unreferenced across scans,
// and returns the report, empty when nothing leaked. ok is false on kernels
// without kmemleak.
func (m *Machine) Leaks(ctx context.Context) (report string, ok bool, err error) {
	if ok, err = m.Exists(ctx, kmemleakFile); !ok || err != nil {
		return "", false, err
	}
	for range 2 {
		if err := m.WriteFile(ctx, kmemleakFile, []byte("scan"), 0o644); err != nil {
			return "", true, err
		}
	}
	b, err := m.ReadFile(ctx, kmemleakFile)
	return string(b), true, err
}
