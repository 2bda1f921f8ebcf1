package suite

// Helpers of the registration, activation, matching, lifecycle and control
// suites (R1, R2, R10-R16): live sockets a test can act on between two
// messages, refused module loads, raw control requests and report lookups.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"layer45/harness/agent"
	"layer45/harness/vm"
	"layer45/vmimages/control"
	"layer45/vmimages/traffic"
)

var liveSeq atomic.Int32

// Live is an l45net client running in the background whose socket stays
// open between messages: after message i it waits until the test lets it
// send message i+1, so a test can change Layer 4.5's state (load, toggle,
// deprecate, re-prioritise) between two messages of one existing socket.
type Live struct {
	m    *vm.Machine
	proc *vm.Process
	dir  string
	n    int // messages in all
	next int // the next message the client waits to send
	done bool
	res  *agent.Result // the process's result once it ended (the agent hands it out once)
	rep  *traffic.Report
}

// StartLive starts c (its SyncDir is set here) in m. The client sends its
// first message at once; Ready waits until it is done with it.
func StartLive(t testing.TB, m *vm.Machine, c traffic.Client) *Live {
	t.Helper()
	if len(c.Messages) == 0 {
		t.Fatalf("StartLive: no messages")
	}
	c.SyncDir = fmt.Sprintf("/tmp/l45sync-%d", liveSeq.Add(1))
	proc, err := m.Spawn(context.Background(), c.Args()...)
	if err != nil {
		t.Fatalf("start live client: %v", err)
	}
	l := &Live{m: m, proc: proc, dir: c.SyncDir, n: len(c.Messages), next: 1}
	t.Cleanup(func() {
		if !l.done && !m.Exited() {
			l.proc.Stop(context.Background())
		}
	})
	return l
}

// Ready waits until the client has sent (and received, if asked) every
// message before the next one and is waiting: its socket is open and
// idle.
func (l *Live) Ready(t testing.TB) {
	t.Helper()
	if l.next >= l.n {
		t.Fatalf("Live.Ready: all %d messages already released", l.n)
	}
	file := traffic.ReadyFile(l.dir, l.next)
	vm.WaitFor(t, "live client to reach message "+fmt.Sprint(l.next), 60*time.Second, func() bool {
		if l.exited() {
			t.Fatalf("live client ended before message %d: exit %d, stdout %q, stderr %q",
				l.next, l.res.ExitCode, l.res.Stdout, l.res.Stderr)
		}
		there, err := l.m.Exists(context.Background(), file)
		if err != nil {
			t.Fatalf("%v", err)
		}
		return there
	})
}

// exited reports whether the client process has already ended (keeping
// its result).
func (l *Live) exited() bool {
	if l.res != nil {
		return true
	}
	r, err := l.proc.Wait(context.Background(), time.Millisecond)
	if err != nil {
		return false
	}
	l.res = r
	return true
}

// Go lets the client send its next message.
func (l *Live) Go(t testing.TB) {
	t.Helper()
	file := traffic.GoFile(l.dir, l.next)
	l.m.MustWriteFile(t, file, nil, 0o644)
	l.next++
}

// Step is Ready then Go.
func (l *Live) Step(t testing.TB) {
	t.Helper()
	l.Ready(t)
	l.Go(t)
}

// Finish releases the remaining messages and returns the client's report.
func (l *Live) Finish(t testing.TB) *traffic.Report {
	t.Helper()
	if l.done {
		return l.rep
	}
	for l.next < l.n {
		l.Step(t)
	}
	r := l.res
	if r == nil {
		var err error
		r, err = l.proc.Wait(context.Background(), vm.Scale(60*time.Second))
		if err != nil {
			t.Fatalf("live client: %v", err)
		}
	}
	l.done = true
	if err := r.Err(); err != nil {
		t.Fatalf("live client: %v", err)
	}
	rep, err := traffic.ParseReport(r.Stdout)
	if err != nil {
		t.Fatalf("live client: %v", err)
	}
	l.rep = rep
	return rep
}

// Kill ends the client at once (its socket is closed by the kernel).
func (l *Live) Kill(t testing.TB) {
	t.Helper()
	if l.done {
		return
	}
	l.done = true
	if l.exited() {
		return
	}
	if _, err := l.proc.Signal(context.Background(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill live client: %v", err)
	}
}

// LoadError loads a module that must be refused and returns the kernel's
// refusal; a module that loads fails t (and is unloaded again).
func LoadError(t testing.TB, p *Pair, m *vm.Machine, module string, params Params) *agent.ModuleError {
	t.Helper()
	err := m.LoadModule(context.Background(), p.Mods, module, params.String())
	if err == nil {
		m.UnloadModule(context.Background(), module)
		t.Fatalf("guest %s: insmod %s %s succeeded; it must be refused", m.Name, module, params)
	}
	var me *agent.ModuleError
	if !errors.As(err, &me) {
		t.Fatalf("guest %s: insmod %s: %v is not the kernel's refusal", m.Name, module, err)
	}
	return me
}

// Raw sends one control request through l45ctl with flags (-raw, -nobody)
// and returns the reply's payload as text; l45ctl failing fails t.
func Raw(t testing.TB, m *vm.Machine, req string, flags ...string) string {
	t.Helper()
	b, err := m.Control().Send(context.Background(), req, flags...)
	if err != nil {
		t.Fatalf("guest %s: l45ctl %v %q: %v", m.Name, flags, req, err)
	}
	return strings.TrimSpace(string(b))
}

// Reply sends a request and parses the reply strictly.
func Reply(t testing.TB, m *vm.Machine, req string, flags ...string) *control.Reply {
	t.Helper()
	text := Raw(t, m, req, flags...)
	r, err := control.ParseReply([]byte(text))
	if err != nil {
		t.Fatalf("guest %s: %q: %v", m.Name, req, err)
	}
	return r
}

// Result sends a DEPRECATE/TOGGLE/PRIORITY request and returns its Result,
// failing t unless the reply is exactly {"ID":id,"Result":0/1}.
func Result(t testing.TB, m *vm.Machine, id int, req string) int {
	t.Helper()
	r := Reply(t, m, req)
	if r.Error != "" || r.ID == nil || *r.ID != id || r.Result == nil || r.IV != "" || r.Response != "" {
		t.Fatalf("guest %s: %q: reply %+v is not {\"ID\":%d,\"Result\":n}", m.Name, req, r, id)
	}
	if *r.Result != 0 && *r.Result != 1 {
		t.Fatalf("guest %s: %q: Result %d is not 0 or 1", m.Name, req, *r.Result)
	}
	return *r.Result
}

// Entry returns module id's report entry and whether it is deprecated,
// failing t when the report does not list it.
func Entry(t testing.TB, m *vm.Machine, id int) (control.Module, bool) {
	t.Helper()
	r := Report(t, m)
	e, dep, ok := r.Find(id)
	if !ok {
		t.Fatalf("guest %s: CUST_REPORT does not list module %d: %+v", m.Name, id, r)
	}
	return e, dep
}

// Revoked counts module id's entries in the report's Revoked list.
func Revoked(r *control.Report, id int) int {
	n := 0
	for _, e := range r.Revoked {
		if e.ID == id {
			n++
		}
	}
	return n
}

// ProtoNumber is the IP protocol number a module's protocol parameter
// takes for "tcp" or "udp".
func ProtoNumber(proto string) int {
	if proto == "tcp" {
		return 6
	}
	return 17
}

// ClientTarget are module parameters that match l45net's sockets in the
// client guest toward the server's port, plus extra.
func ClientTarget(proto string, port int, extra Params) Params {
	p := Params{"task_tgid": "l45net", "protocol": ProtoNumber(proto), "dest_port": port}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// ServerTarget are module parameters that match an l45net server's
// sockets in the server guest on its local port, plus extra.
func ServerTarget(proto string, port int, extra Params) Params {
	p := Params{"task_tgid": "l45net", "protocol": ProtoNumber(proto), "source_port": port}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// WaitPayloads waits until the wire shows n payloads (UDP datagrams or TCP
// connections) from the client to the server's port, or from the server's
// port to the client, and returns them.
func (p *Pair) WaitPayloads(t testing.TB, proto string, port int, toServer bool, n int) []string {
	t.Helper()
	var got []string
	vm.WaitFor(t, fmt.Sprintf("%d %s payloads on the wire (port %d)", n, proto, port), 20*time.Second, func() bool {
		got = p.Payloads(t, proto, port, toServer)
		return len(got) >= n
	})
	return got
}
