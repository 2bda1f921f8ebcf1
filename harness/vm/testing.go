package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"layer45/harness/agent"
	"layer45/harness/artifacts"
	"layer45/harness/infra"
	"layer45/harness/link"
)

// RequireGuests skips t under -short (guest tests are slow) and otherwise
// returns the environment, failing t when it cannot be prepared: a missing
// QEMU or kernel is a failure, never a skip.
func RequireGuests(t testing.TB) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("boots guests; skipped with -short")
	}
	env, err := DefaultEnv(context.Background())
	if err != nil {
		Fatal(t, err)
	}
	return env
}

// attr records a test attribute; values are one line.
func attr(t testing.TB, key, value string) {
	t.Attr(key, strings.Join(strings.Fields(value), " "))
}

// Fatal fails t with err, marking an infrastructure failure as such
// (attribute and message): it is not a verdict on Layer 4.5.
func Fatal(t testing.TB, err error) {
	t.Helper()
	var ie *infra.Error
	if errors.As(err, &ie) {
		attr(t, artifacts.AttrInfra, ie.Error())
		t.Fatalf("infrastructure failure (not a verdict on Layer 4.5): %v", err)
	}
	t.Fatalf("%v", err)
}

var (
	evidenceMu  sync.Mutex
	evidenceDir = map[testing.TB]*artifacts.Dir{}
)

// Evidence returns t's evidence folder, made on first use; when t ends it is
// removed if t passed and kept (and printed) if it failed.
func Evidence(t testing.TB) *artifacts.Dir {
	t.Helper()
	evidenceMu.Lock()
	defer evidenceMu.Unlock()
	if d, ok := evidenceDir[t]; ok {
		return d
	}
	d, err := artifacts.New(t.Name())
	if err != nil {
		Fatal(t, infra.Wrap("evidence folder", err))
	}
	evidenceDir[t] = d
	t.Cleanup(func() {
		evidenceMu.Lock()
		delete(evidenceDir, t)
		evidenceMu.Unlock()
		if kept := d.Finish(t.Failed()); kept != "" && t.Failed() {
			attr(t, artifacts.AttrEvidence, kept)
		}
	})
	return d
}

// testContext is bounded by the test binary's deadline, keeping a margin so
// cleanups can still save evidence and stop guests.
func testContext(t testing.TB) (context.Context, context.CancelFunc) {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			margin := time.Until(dl) / 10
			return context.WithDeadline(context.Background(), dl.Add(-margin))
		}
	}
	return context.WithCancel(context.Background())
}

var slowdownOnce sync.Once

// Boot starts a guest for t and stops it when t ends. Kernel crashes seen on
// its console fail t with their titles (unless claimed with TakeCrashes, or
// charged to a subtest that took the guest over with Use); when t fails,
// the guest's kernel log and trace buffer join the evidence.
func Boot(t testing.TB, opts ...Option) *Machine {
	t.Helper()
	return BootAll(t, opts)[0]
}

// BootAll starts one guest per option list for t, at the same time (a
// restore takes a fraction of a core; real boots still take turns), and
// stops them when t ends, as Boot does. If any fails to start, t fails and
// the others are stopped.
func BootAll(t testing.TB, optSets ...[]Option) []*Machine {
	t.Helper()
	env := RequireGuests(t)
	ev := Evidence(t)
	ms := make([]*Machine, len(optSets))
	errs := make([]error, len(optSets))
	// A guest's context lives until t's cleanup has stopped it.
	ctxs := make([]context.Context, len(optSets))
	cancels := make([]context.CancelFunc, len(optSets))
	var wg sync.WaitGroup
	for i, opts := range optSets {
		ctxs[i], cancels[i] = testContext(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms[i], errs[i] = start(ctxs[i], env, ev, func(line string) { t.Log(line) }, t, opts)
		}()
	}
	wg.Wait()
	for i, m := range ms {
		if m == nil {
			cancels[i]()
			continue
		}
		stopWith(t, ev, m, ctxs[i], cancels[i])
	}
	for _, err := range errs {
		if err != nil {
			Fatal(t, err)
		}
	}
	slowdownOnce.Do(func() {
		ctx, cancel := testContext(t)
		defer cancel()
		f, err := MeasureSlowdown(ctx, ms[0])
		if err != nil {
			t.Fatalf("measure guest speed: %v", err)
		}
		SetSlowdown(f)
		t.Logf("guests run %.1fx slower than the host (%s); deadlines are scaled by that", f, env.AccelNote)
	})
	return ms
}

// stopWith registers the cleanup of a guest booted for t, which ends ctx.
func stopWith(t testing.TB, ev *artifacts.Dir, m *Machine, ctx context.Context, cancel context.CancelFunc) {
	attr(t, artifacts.AttrKernel, m.Kernel().Release)
	t.Cleanup(func() {
		defer cancel()
		// On debug kernels every test ends with a leak scan (contract R2).
		if !m.Exited() {
			if report, ok, err := m.Leaks(ctx); ok && (err != nil || strings.Contains(report, "unreferenced object")) {
				ev.WriteFile(m.Name+".kmemleak.txt", []byte(report))
				t.Errorf("guest %s: kmemleak found leaks (%v):\n%s\nevidence: %s", m.Name, err, report, ev.Path())
			}
		}
		// Evidence is gathered before power-off, while the guest can talk.
		if t.Failed() || len(m.Crashes()) > 0 {
			m.SaveEvidence(ctx)
		}
		m.shutdown(ctx)
		// Reports that appeared after the last subtest, or while shutting
		// down, are this test's.
		m.failOwner(t, true)
	})
}

// slowdownLoop is a CPU-bound shell loop run in the guest and on the host.
const slowdownLoop = `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done`

// MeasureSlowdown times the same busybox loop in the guest and on the host.
func MeasureSlowdown(ctx context.Context, m *Machine) (float64, error) {
	start := time.Now()
	if err := exec.CommandContext(ctx, "/bin/busybox", "sh", "-c", slowdownLoop).Run(); err != nil {
		return 0, fmt.Errorf("host busybox: %w", err)
	}
	host := time.Since(start)
	start = time.Now()
	r, err := m.Exec(ctx, agent.Cmd{Argv: []string{"/bin/sh", "-c", slowdownLoop}, Timeout: 4 * time.Minute})
	if err != nil {
		return 0, err
	}
	if r.ExitCode != 0 {
		return 0, fmt.Errorf("guest speed loop exited %d: %s", r.ExitCode, r.Stderr)
	}
	return float64(time.Since(start)) / float64(host), nil
}

// Link is an Ethernet segment shared by guests, captured to a pcap.
type Link struct {
	hub  *link.Hub
	pcap string
	dir  string
}

// NewLink makes a segment for t; its capture is evidence.
func NewLink(t testing.TB, name string) *Link {
	t.Helper()
	l, err := OpenLink(Evidence(t), name)
	if err != nil {
		Fatal(t, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// OpenLink makes a segment whose capture goes to ev as NAME.pcap, for
// guests started without a test (Start); Close ends it.
func OpenLink(ev *artifacts.Dir, name string) (*Link, error) {
	dir, err := makePrivateDir("link-" + name)
	if err != nil {
		return nil, infra.Wrap("link "+name, err)
	}
	pcap := ev.File(name + ".pcap")
	h, err := link.Listen(filepath.Join(dir, "hub.sock"), pcap)
	if err != nil {
		os.RemoveAll(dir)
		return nil, infra.Wrap("link "+name, err)
	}
	return &Link{hub: h, pcap: pcap, dir: dir}, nil
}

// Close stops the segment; its capture stays.
func (l *Link) Close() error {
	err := l.hub.Close()
	os.RemoveAll(l.dir)
	return err
}

// Pcap is the path of the segment's capture (readable while it grows).
func (l *Link) Pcap() string { return l.pcap }
