package vm

import (
	"strings"
	"sync"
	"testing"

	"layer45/harness/artifacts"
	"layer45/harness/console"
)

// A kernel report is charged to the test that was running on the guest
// when it appeared: the test that booted it, or the subtest that took it
// over with Use. Every report is listed, a crashed kernel is not handed to
// a later test, and an oops makes the pending agent calls fail at once.

// crash is one kernel report and the test it is charged to.
type crash struct {
	console.Report
	owner   testing.TB // nil for guests started without a test (vm.Start)
	handled bool       // claimed with TakeCrashes or failed its owner
}

// CrashError is the cause of a GuestError for an agent call that was
// pending when the guest's kernel oopsed or panicked.
type CrashError struct{ Title string }

func (e *CrashError) Error() string { return "the guest's kernel crashed: " + e.Title }

// fatalPrefixes start the titles of reports after which the task that hit
// them is dead (or the kernel is): a call waiting on it would never end.
var fatalPrefixes = []string{
	"BUG: unable to handle", "BUG: kernel NULL pointer dereference",
	"general protection fault", "kernel BUG", "Oops", "Internal error: Oops",
	"Unable to handle kernel", "divide error", "Kernel panic",
}

func isFatal(title string) bool {
	for _, p := range fatalPrefixes {
		if strings.HasPrefix(title, p) {
			return true
		}
	}
	return false
}

// recordCrash is the console's report callback.
func (m *Machine) recordCrash(r console.Report) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crashes = append(m.crashes, crash{Report: r, owner: m.owner})
	if m.firstCrash == "" {
		m.firstCrash = r.Title
		if m.owner != nil {
			m.crashedIn = m.owner.Name()
		}
	}
	if isFatal(r.Title) && m.oopsed == nil {
		m.oopsed = &CrashError{Title: r.Title}
		close(m.oops)
	}
}

// Use makes t the test running on the guest until t ends: kernel reports
// that appear meanwhile fail t, not the test that booted the guest. A
// guest whose kernel already crashed in another test fails t at once: a
// crashed kernel proves nothing about what runs on it next.
func (m *Machine) Use(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	if m.firstCrash != "" {
		title, in := m.firstCrash, m.crashedIn
		m.mu.Unlock()
		t.Fatalf("guest %s: its kernel crashed earlier (in %s: %s); a crashed guest is not reused", m.Name, in, title)
	}
	prev := m.owner
	m.owner = t
	m.mu.Unlock()
	t.Cleanup(func() {
		m.failOwner(t, false)
		m.mu.Lock()
		m.owner = prev
		m.mu.Unlock()
		// The guest's evidence (kept, since the test that booted it fails
		// with t) is t's evidence too.
		if t.Failed() {
			if _, seen := evidenceNamed.LoadOrStore(t.Name()+"\x00"+m.evidence.Path(), true); !seen {
				attr(t, artifacts.AttrEvidence, m.evidence.Path())
			}
		}
	})
}

// evidenceNamed remembers which (test, folder) pairs were recorded, so two
// guests sharing one folder name it once.
var evidenceNamed sync.Map

// failOwner fails t with every unhandled report charged to it (with all
// set, every unhandled report: t is the test that booted the guest).
func (m *Machine) failOwner(t testing.TB, all bool) {
	m.mu.Lock()
	var mine []console.Report
	for i := range m.crashes {
		c := &m.crashes[i]
		if !c.handled && (all || c.owner == t) {
			c.handled = true
			mine = append(mine, c.Report)
		}
	}
	m.mu.Unlock()
	for _, c := range mine {
		attr(t, artifacts.AttrCrash, c.Title)
		t.Errorf("guest %s: kernel crash: %s\n  %s\nevidence: %s", m.Name, c.Title,
			strings.Join(c.Lines, "\n  "), m.evidence.Path())
	}
}

// Crashes returns every kernel crash report seen on the console so far.
func (m *Machine) Crashes() []console.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	var r []console.Report
	for _, c := range m.crashes {
		r = append(r, c.Report)
	}
	return r
}

// TakeCrashes returns the crash reports not yet handled and marks them so:
// a test that provokes a crash on purpose claims it, so the harness does
// not fail the test for it.
func (m *Machine) TakeCrashes() []console.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	var r []console.Report
	for i := range m.crashes {
		if !m.crashes[i].handled {
			m.crashes[i].handled = true
			r = append(r, m.crashes[i].Report)
		}
	}
	return r
}

// unhandledCrashes are the reports nobody has claimed or been failed for.
func (m *Machine) unhandledCrashes() []console.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	var r []console.Report
	for _, c := range m.crashes {
		if !c.handled {
			r = append(r, c.Report)
		}
	}
	return r
}

// crashCause is the oops that ended pending calls, if any.
func (m *Machine) crashCause() *CrashError {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.oopsed
}
