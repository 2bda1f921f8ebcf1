package vm

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"layer45/harness/agent"
	"layer45/harness/kernels"
	"layer45/harness/modules"
	"layer45/harness/repo"
	"layer45/vmimages/control"
	"layer45/vmimages/guest"
	"layer45/vmimages/traffic"
)

// QEMUPid is the guest's QEMU process id (tests freeze it to simulate a
// hung guest).
func (m *Machine) QEMUPid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.qemu == nil {
		return 0
	}
	return m.qemu.Pid()
}

// Start runs a program in the background in the guest (a server, say).
// The process is stopped when the guest powers off.
func (m *Machine) Start(ctx context.Context, argv ...string) (*agent.Process, error) {
	var p *agent.Process
	err := m.Call(ctx, "start "+argv[0], func(ctx context.Context, a *agent.Client) error {
		var err error
		p, err = a.Start(ctx, agent.Cmd{Argv: argv})
		return err
	})
	return p, err
}

// Traffic runs l45net as a client and returns what the application saw,
// failing t if the tool itself fails.
func (m *Machine) Traffic(t testing.TB, c traffic.Client) *traffic.Report {
	t.Helper()
	rep, _ := m.TimedTraffic(t, c)
	return rep
}

// TimedTraffic is Traffic that also says how long the program ran
// (measured by the guest's agent).
func (m *Machine) TimedTraffic(t testing.TB, c traffic.Client) (*traffic.Report, time.Duration) {
	t.Helper()
	r, err := m.Exec(context.Background(), agent.Cmd{Argv: c.Args()})
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("guest %s: %v", m.Name, err)
	}
	rep, err := traffic.ParseReport(r.Stdout)
	if err != nil {
		t.Fatalf("guest %s: %v", m.Name, err)
	}
	return rep, r.Duration
}

// Control is a client for Layer 4.5's control interface in this guest.
func (m *Machine) Control() control.Client {
	return control.Client{Send: func(ctx context.Context, req string, flags ...string) ([]byte, error) {
		argv := append(append([]string{guest.L45ctl}, flags...), req)
		r, err := m.Exec(ctx, agent.Cmd{Argv: argv})
		if err != nil {
			return nil, err
		}
		if err := r.Err(); err != nil {
			return nil, err
		}
		return r.Stdout, nil
	}}
}

// Kernel is the kernel the guest booted.
func (m *Machine) Kernel() *kernels.Kernel { return m.cfg.kernel }

var (
	buildsMu sync.Mutex
	builds   = map[string]*modules.Set{}
)

// BuildModules builds the repository's kernel/ tree for k (cached).
func BuildModules(ctx context.Context, env *Env, k *kernels.Kernel) (*modules.Set, error) {
	buildsMu.Lock()
	defer buildsMu.Unlock()
	if s, ok := builds[k.Image]; ok {
		return s, nil
	}
	root, err := repo.Root()
	if err != nil {
		return nil, err
	}
	s, err := modules.Build(ctx, env.Cache, k, path.Join(root, "kernel"))
	if err != nil {
		return nil, err
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
		t.Fatalf("%v", err)
	}
	return s
}

// guestModuleDir is where LoadModule puts .ko files in the guest.
const guestModuleDir = "/tmp/modules"

// LoadModule copies the named module of s into the guest and loads it with
// params. A refused load (the module's init failed or crashed, a bad
// parameter) is returned, usually as *agent.ModuleError with the kernel's
// errno and log lines; a guest that does not answer fails t.
func (m *Machine) LoadModule(t testing.TB, s *modules.Set, name, params string) error {
	t.Helper()
	ko, err := s.Path(name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	guest := path.Join(guestModuleDir, name+".ko")
	// Load/unload loops load the same file many times: copy it once per
	// boot (a build's path in the cache names its content).
	m.mu.Lock()
	there := m.uploaded[guest] == ko
	m.mu.Unlock()
	var data []byte
	if !there {
		if data, err = os.ReadFile(ko); err != nil {
			t.Fatalf("%v", err)
		}
	}
	var loadErr error
	err = m.Call(context.Background(), "load "+name, func(ctx context.Context, a *agent.Client) error {
		if !there {
			if err := a.PutFile(ctx, guest, data, 0o644); err != nil {
				return err
			}
			m.mu.Lock()
			m.uploaded[guest] = ko
			m.mu.Unlock()
		}
		_, loadErr = a.LoadModule(ctx, guest, params)
		if ctx.Err() != nil {
			return loadErr // no answer: the guest is gone or hung
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return loadErr
}

// MustLoadModule is LoadModule that fails t when the module is refused.
func (m *Machine) MustLoadModule(t testing.TB, s *modules.Set, name, params string) {
	t.Helper()
	if err := m.LoadModule(t, s, name, params); err != nil {
		t.Fatalf("guest %s: %v", m.Name, err)
	}
}

// UnloadModule removes a module; a refusal is returned, a silent guest
// fails t.
func (m *Machine) UnloadModule(t testing.TB, name string) error {
	t.Helper()
	var unloadErr error
	err := m.Call(context.Background(), "unload "+name, func(ctx context.Context, a *agent.Client) error {
		_, unloadErr = a.UnloadModule(ctx, name)
		if ctx.Err() != nil {
			return unloadErr
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return unloadErr
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

// WaitListening waits until a socket in the guest is bound to port (UDP) or
// listening on it (TCP): a server started in the background is ready only
// then, and a client sent earlier would meet a closed port.
func (m *Machine) WaitListening(t testing.TB, proto string, port int) {
	t.Helper()
	file := "/proc/net/" + proto
	want := fmt.Sprintf(":%04X ", port)
	WaitFor(t, fmt.Sprintf("%s port %d in guest %s", proto, port, m.Name), 30*time.Second, func() bool {
		var b []byte
		err := m.Call(context.Background(), "read "+file, func(ctx context.Context, a *agent.Client) error {
			var err error
			b, err = a.ReadFile(ctx, file)
			return err
		})
		if err != nil {
			t.Fatalf("%v", err)
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(l)
			// local_address is field 1; TCP state 0A is LISTEN.
			if len(f) > 3 && strings.HasSuffix(f[1]+" ", want) && (proto == "udp" || f[3] == "0A") {
				return true
			}
		}
		return false
	})
}

// kmemleakFile is the leak detector's interface on debug kernels.
const kmemleakFile = "/sys/kernel/debug/kmemleak"

// Leaks asks the kernel's leak detector (debug kernels only) for leaks: it
// scans twice, as kmemleak wants objects to stay unreferenced across scans,
// and returns the report, empty when nothing leaked. ok is false on kernels
// without kmemleak.
func (m *Machine) Leaks(ctx context.Context) (report string, ok bool, err error) {
	err = m.Call(ctx, "kmemleak", func(ctx context.Context, a *agent.Client) error {
		if _, err := a.ReadFile(ctx, kmemleakFile); err != nil {
			return nil // no kmemleak in this kernel
		}
		ok = true
		for i := 0; i < 2; i++ {
			if err := a.PutFile(ctx, kmemleakFile, []byte("scan"), 0o644); err != nil {
				return fmt.Errorf("kmemleak scan: %w", err)
			}
		}
		b, err := a.ReadFile(ctx, kmemleakFile)
		report = string(b)
		return err
	})
	return report, ok, err
}
