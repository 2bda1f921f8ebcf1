// Package suite is what the end-to-end suites share: two guests on one
// link with Layer 4.5 loaded, customization modules loaded by parameters,
// real dnsmasq and dig, and the three views a test asserts on (what the
// application saw, what crossed the wire, what Layer 4.5 reports).
package suite

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"layer45/harness/agent"
	"layer45/harness/modules"
	"layer45/harness/pcapdns"
	"layer45/harness/vm"
	"layer45/vmimages/control"
	"layer45/vmimages/guest"
)

// Addresses of the two guests.
const (
	ServerIP = "10.0.0.20"
	ClientIP = "10.0.0.40"
)

// DNSName is the name dnsmasq answers with DNSAnswer.
const (
	DNSName   = "probe.layer45.test"
	DNSAnswer = "10.9.8.7"
)

// Pair is a server and a client guest on one link.
type Pair struct {
	Link   *vm.Link
	Server *vm.Machine
	Client *vm.Machine
	Mods   *modules.Set
}

// NewPair boots the two guests and loads Layer 4.5 into both (unless the
// kernel has it built in).
func NewPair(t testing.TB, opts ...vm.Option) *Pair {
	t.Helper()
	p := &Pair{Link: vm.NewLink(t, "lan")}
	ms := vm.BootAll(t,
		append([]vm.Option{vm.WithName("server"), vm.WithNIC(p.Link, ServerIP+"/24")}, opts...),
		append([]vm.Option{vm.WithName("client"), vm.WithNIC(p.Link, ClientIP+"/24")}, opts...))
	p.Server, p.Client = ms[0], ms[1]
	p.Mods = vm.RequireModules(t, p.Server)
	// Both guests load the core at once: each insmod costs a guest CPU.
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = loadCore(m, p.Mods)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			vm.Fatal(t, err)
		}
	}
	return p
}

// Run runs fn as the subtest name on the pair. The subtest owns both
// guests while it runs: a kernel report fails it, not the test that booted
// them, and it fails at once when a guest's kernel crashed in an earlier
// subtest (a crashed kernel proves nothing about later rules).
func (p *Pair) Run(t *testing.T, name string, fn func(t *testing.T)) bool {
	t.Helper()
	return t.Run(name, func(t *testing.T) {
		for _, m := range []*vm.Machine{p.Server, p.Client} {
			m.Use(t)
			p.restoreModules(t, m)
		}
		fn(t)
	})
}

// restoreModules makes m's loaded modules at the end of t what they were
// at its start, even when t failed half-way: modules t left loaded are
// unloaded and a Layer 4.5 core it unloaded is loaded again, so the next
// subtest starts from the same state (no EEXIST cascade).
func (p *Pair) restoreModules(t *testing.T, m *vm.Machine) {
	t.Helper()
	before := loadedModules(t, m)
	t.Cleanup(func() {
		if m.Exited() || len(m.Crashes()) > 0 {
			return // nothing to restore on a dead or crashed guest
		}
		for name := range loadedModules(t, m) {
			if before[name] {
				continue
			}
			// Sockets of the subtest may still be closing.
			var err error
			for range 20 {
				if err = m.UnloadModule(context.Background(), name); err == nil {
					break
				}
				time.Sleep(vm.Scale(100 * time.Millisecond))
			}
			if err != nil {
				t.Errorf("guest %s: the subtest left module %s loaded and it cannot be unloaded: %v", m.Name, name, err)
			}
		}
		if core := p.Mods.CoreName(); before[core] && !loadedModules(t, m)[core] {
			m.MustLoadModule(t, p.Mods, core, "")
		}
	})
}

// loadedModules are the modules listed in m's /proc/modules.
func loadedModules(t testing.TB, m *vm.Machine) map[string]bool {
	t.Helper()
	b, err := m.ReadFile(context.Background(), "/proc/modules")
	if err != nil {
		t.Fatalf("%v", err)
	}
	mods := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			mods[f[0]] = true
		}
	}
	return mods
}

// RequireCPUs fails t unless both guests have n CPUs online.
func RequireCPUs(t testing.TB, p *Pair, n int) {
	t.Helper()
	want := "0"
	if n > 1 {
		want = fmt.Sprintf("0-%d", n-1)
	}
	for _, m := range []*vm.Machine{p.Server, p.Client} {
		if got := strings.TrimSpace(m.MustRun(t, "/bin/cat", "/sys/devices/system/cpu/online")); got != want {
			t.Fatalf("guest %s: CPUs online %q, want %q", m.Name, got, want)
		}
	}
}

// LoadCore loads Layer 4.5 into m unless its kernel has it built in, and
// tells m's l45ctl the core's control interface when it is not the
// contract's (a tree with other settings).
func LoadCore(t testing.TB, m *vm.Machine, mods *modules.Set) {
	t.Helper()
	if err := loadCore(m, mods); err != nil {
		vm.Fatal(t, err)
	}
}

func loadCore(m *vm.Machine, mods *modules.Set) error {
	if nl := mods.Control(); nl != guest.DefaultNetlink {
		if err := m.WriteFile(context.Background(), guest.NetlinkFile, []byte(nl.String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	if m.Kernel().Layer45Builtin {
		return nil
	}
	return m.LoadModule(context.Background(), mods, mods.CoreName(), "")
}

// Params are a customization module's parameters.
type Params map[string]any

// String renders params as insmod arguments, in a stable order.
func (p Params) String() string {
	var keys []string
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, p[k]))
	}
	return strings.Join(parts, " ")
}

// Load loads a customization module into m and unloads it when t ends
// (a failure to unload fails t: it is a lifecycle bug).
func (p *Pair) Load(t testing.TB, m *vm.Machine, module string, params Params) {
	t.Helper()
	m.MustLoadModule(t, p.Mods, module, params.String())
	t.Cleanup(func() {
		if m.Exited() {
			return
		}
		if err := m.UnloadModule(context.Background(), module); err != nil {
			t.Errorf("guest %s: unload %s: %v", m.Name, module, err)
		}
	})
}

// Report asks m's Layer 4.5 for CUST_REPORT.
func Report(t testing.TB, m *vm.Machine) *control.Report {
	t.Helper()
	r, err := m.Control().Report(context.Background())
	if err != nil {
		t.Fatalf("guest %s: CUST_REPORT: %v", m.Name, err)
	}
	return r
}

// StartDnsmasq runs the real dnsmasq on the server, answering DNSName with
// DNSAnswer over UDP and TCP, and stops it when t ends.
func (p *Pair) StartDnsmasq(t testing.TB) {
	t.Helper()
	proc, err := p.Server.Spawn(context.Background(), "/usr/sbin/dnsmasq", "--keep-in-foreground",
		"--no-resolv", "--no-hosts", "--user=root", "--group=root", "--listen-address="+ServerIP,
		"--bind-interfaces", "--log-queries", "--log-facility=-",
		"--address=/"+DNSName+"/"+DNSAnswer)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if !p.Server.Exited() {
			proc.Stop(context.Background())
		}
	})
	// dnsmasq is ready when it answers; dig retries until then.
	vm.WaitFor(t, "dnsmasq to answer", 30*time.Second, func() bool {
		r, err := p.Server.Exec(context.Background(), agent.Cmd{Argv: []string{"/usr/bin/dig", "+short", "+time=1", "+tries=1", "@" + ServerIP, DNSName}})
		return err == nil && strings.TrimSpace(string(r.Stdout)) == DNSAnswer
	})
}

// Dig runs the real dig in the client against the server's dnsmasq.
func (p *Pair) Dig(t testing.TB, extra ...string) *agent.Result {
	t.Helper()
	argv := append([]string{"/usr/bin/dig", "+time=3", "+tries=1", "@" + ServerIP, DNSName, "A"}, extra...)
	r, err := p.Client.Exec(context.Background(), agent.Cmd{Argv: argv})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return r
}

// Wire returns every packet that crossed the link so far.
func (p *Pair) Wire(t testing.TB) []pcapdns.Packet {
	t.Helper()
	pk, err := pcapdns.ReadPackets(p.Link.Pcap())
	if err != nil {
		t.Fatalf("%v", err)
	}
	return pk
}
