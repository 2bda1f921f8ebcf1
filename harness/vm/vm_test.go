package vm_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/agent"
	"layer45/harness/console"
	"layer45/harness/pcapdns"
	"layer45/harness/vm"
	"layer45/vmimages/traffic"
)

func TestBootOneGuestAndRunACommand(t *testing.T) {
	g := vm.Boot(t, vm.WithName("solo"))
	out := g.MustRun(t, "/bin/uname", "-r")
	env := vm.RequireGuests(t)
	require.Equal(t, env.Kernel.Release, strings.TrimSpace(out))

	r, err := g.Exec(context.Background(), agent.Cmd{Argv: []string{"/bin/sh", "-c", "echo oops >&2; exit 3"}})
	require.NoError(t, err)
	require.Equal(t, 3, r.ExitCode)
	require.Equal(t, "oops\n", string(r.Stderr))

	// Errors keep their kind through the Machine: a missing file is
	// fs.ErrNotExist and the agent's own error, a non-zero exit the
	// program's, a refused module load the kernel's errno.
	_, err = g.ReadFile(context.Background(), "/no/such/file")
	var ge *vm.GuestError
	require.ErrorAs(t, err, &ge)
	require.Equal(t, "solo", ge.Guest)
	require.ErrorIs(t, err, fs.ErrNotExist)
	var ae *agent.AgentError
	require.ErrorAs(t, err, &ae)
	_, err = g.Run(context.Background(), "/bin/false")
	var ee *agent.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.Result.ExitCode)
	err = g.UnloadModule(context.Background(), "no_such_module")
	var me *agent.ModuleError
	require.ErrorAs(t, err, &me)
	require.ErrorIs(t, err, syscall.ENOENT)
	there, err := g.Exists(context.Background(), "/init")
	require.NoError(t, err)
	require.True(t, there)

	// After power-off every call says so, as ErrStopped; none panics.
	require.NoError(t, g.Close())
	_, err = g.Run(context.Background(), "/bin/true")
	require.ErrorIs(t, err, vm.ErrStopped)
	require.ErrorAs(t, err, &ge)
}

// pair boots a server and a client on one link.
func pair(t *testing.T) (lan *vm.Link, server, client *vm.Machine) {
	lan = vm.NewLink(t, "lan")
	server = vm.Boot(t, vm.WithName("server"), vm.WithNIC(lan, "10.0.0.20/24"))
	client = vm.Boot(t, vm.WithName("client"), vm.WithNIC(lan, "10.0.0.40/24"))
	return lan, server, client
}

func TestTwoGuestsExchangeUDPAndTCPAndDNS(t *testing.T) {
	lan, server, client := pair(t)
	ctx := context.Background()

	_, err := server.Spawn(ctx, traffic.Server{Proto: "udp", Listen: "10.0.0.20:7000", Prefix: "echo:"}.Args()...)
	require.NoError(t, err)
	_, err = server.Spawn(ctx, traffic.Server{Proto: "tcp", Listen: "10.0.0.20:7001", Prefix: "echo:"}.Args()...)
	require.NoError(t, err)
	_, err = server.Spawn(ctx, "/usr/sbin/dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--user=root", "--listen-address=10.0.0.20", "--bind-interfaces", "--log-queries", "--log-facility=-",
		"--address=/probe.layer45.test/10.9.8.7")
	require.NoError(t, err)
	server.MustWaitListening(t, "udp", 7000)
	server.MustWaitListening(t, "tcp", 7001)
	server.MustWaitListening(t, "udp", 53)

	for _, proto := range []string{"udp", "tcp"} {
		port := map[string]string{"udp": "7000", "tcp": "7001"}[proto]
		r := client.MustTraffic(t, traffic.Client{Proto: proto, To: "10.0.0.20:" + port, Messages: []string{"ping-" + proto}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
		require.Equal(t, []string{"echo:ping-" + proto}, r.Received(), proto)
	}

	out := client.MustRun(t, "/usr/bin/dig", "+short", "+time=5", "+tries=2", "@10.0.0.20", "probe.layer45.test", "A")
	require.Equal(t, "10.9.8.7", strings.TrimSpace(out))

	msgs, err := pcapdns.ReadFile(lan.Pcap())
	require.NoError(t, err)
	q := pcapdns.Filter(msgs, func(m pcapdns.Message) bool { return !m.Response && m.Question() == "probe.layer45.test." })
	require.NotEmpty(t, q, "the pcap must show dig's query:\n%s", pcapdns.Summary(msgs))
	require.Equal(t, "10.0.0.40", q[0].Src.Addr().String())
}

// TestKernelCrashFailsTheOwningTestWithItsTitle: every kind of report
// crash_test provokes is recognised on this kernel with its kind and a
// title blaming the function that crashed, one report per crash. The
// matrix runs it on every kernel: their consoles differ.
func TestKernelCrashFailsTheOwningTestWithItsTitle(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		kinds []string
	}{
		{"warn", []string{console.KindWARNING}},
		{"bug", []string{console.KindKernelBUG}},
		// KASAN checks the shadow of address 0 before the access, which
		// faults on a non-canonical address: a GPF naming the null deref.
		{"null", []string{console.KindNullDeref, console.KindGPF}},
		// Kernels with DEBUG_ATOMIC_SLEEP report the sleep itself first;
		// every kernel reports the schedule under the lock.
		{"sleep_atomic", []string{console.KindSleepInAtomic, console.KindSchedAtomic}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			if tc.mode == "sleep_atomic" {
				requireAtomicSleepReports(t)
			}
			g := vm.Boot(t, vm.WithName("crashy"))
			mods := vm.RequireModules(t, g)
			// A module that oopses in its init fails to load: the report
			// is what counts.
			_ = g.LoadModule(context.Background(), mods, "crash_test", "mode="+tc.mode)
			var got []console.Report
			// A sleep under a spinlock ends with a WARNING of the
			// preemption imbalance the initcall left, claimed here too.
			imbalance := func() bool {
				return len(got) > 1 && got[len(got)-1].Title == "WARNING in do_one_initcall"
			}
			deadline := time.Now().Add(vm.Scale(10 * time.Second))
			for got = g.TakeCrashes(); len(got) == 0 || tc.mode == "sleep_atomic" && !imbalance(); got = append(got, g.TakeCrashes()...) {
				if time.Now().After(deadline) {
					t.Fatalf("no complete crash report for mode=%s, only %q", tc.mode, titles(got))
				}
				time.Sleep(100 * time.Millisecond)
			}
			if tc.mode != "sleep_atomic" {
				require.Len(t, got, 1, "one crash, one report: %v", titles(got))
			}
			require.Contains(t, tc.kinds, got[0].Kind, "report %q", got[0].Title)
			require.Equal(t, "crash_test_init", got[0].Func, "the title %q must blame the function that crashed", got[0].Title)
			require.Contains(t, got[0].Title, "crash_test_init")
		})
	}
}

func titles(rs []console.Report) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Title)
	}
	return out
}

// requireAtomicSleepReports skips t on a kernel that cannot see a sleep
// under a spinlock: without CONFIG_PREEMPT_COUNT (Debian's 5.10 is
// PREEMPT_VOLUNTARY) spin_lock leaves no trace for the scheduler to find.
func requireAtomicSleepReports(t *testing.T) {
	env := vm.RequireGuests(t)
	conf, err := env.Kernel.Config()
	require.NoError(t, err)
	if conf["CONFIG_PREEMPT_COUNT"] != "y" && conf["CONFIG_DEBUG_ATOMIC_SLEEP"] != "y" {
		t.Skipf("kernel %s cannot report sleeping in atomic context: CONFIG_PREEMPT_COUNT and CONFIG_DEBUG_ATOMIC_SLEEP are off", env.Kernel.Release)
	}
}

// recorder is a testing.TB that records failures instead of failing, so
// the harness's own verdicts can be asserted.
type recorder struct {
	testing.TB
	name     string // when set, the name it answers instead of TB's
	errors   []string
	attrs    []string
	cleanups []func()
	failed   bool
	// fatalExits makes Fatalf end the goroutine like testing's FailNow
	// instead of failing the real test.
	fatalExits bool
}

func (r *recorder) Name() string {
	if r.name != "" {
		return r.name
	}
	return r.TB.Name()
}
func (r *recorder) Attr(key, value string) { r.attrs = append(r.attrs, key+"="+value) }

func (r *recorder) Errorf(format string, args ...any) {
	r.failed = true
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	if r.fatalExits {
		runtime.Goexit()
	}
	r.TB.Fatalf("harness gave up on the guest: "+format, args...)
}
func (r *recorder) Failed() bool     { return r.failed }
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestUnclaimedCrashFailsTheTestAndKeepsEvidence(t *testing.T) {
	rec := &recorder{TB: t}
	g := vm.Boot(rec, vm.WithName("oopser"))
	// A deliberate oops from user space: the kernel's sysrq crash handler
	// is not enabled in every config, so use the test module.
	mods := vm.RequireModules(t, g)
	g.LoadModule(context.Background(), mods, "crash_test", "mode=warn")
	require.Eventually(t, func() bool { return len(g.Crashes()) > 0 }, vm.Scale(10*time.Second), 100*time.Millisecond)
	ev := g.Evidence().Path()
	rec.runCleanups()
	require.Len(t, rec.errors, 1, "%v", rec.errors)
	require.Contains(t, rec.errors[0], "guest oopser: kernel crash: WARNING")
	require.Contains(t, rec.errors[0], "evidence: "+ev)
	require.FileExists(t, ev+"/oopser.console.txt")
	require.FileExists(t, ev+"/oopser.dmesg.txt", "a failing test gets the guest's kernel log")
	os.RemoveAll(ev)
}

// A subtest that takes a guest over with Use is charged with the reports
// that appear while it runs, not the test that booted the guest; a call
// pending when the kernel oopses fails at once with the crash's title; and
// the crashed guest is refused to the next subtest.
func TestCrashIsChargedToTheRunningSubtestAndEndsPendingCalls(t *testing.T) {
	parent := &recorder{TB: t, name: t.Name() + "/parent"}
	g := vm.Boot(parent, vm.WithName("charged"))
	mods := vm.RequireModules(t, g)
	sub := &recorder{TB: t, name: t.Name() + "/parent/sub"}
	g.Use(sub)

	// A call that would run for minutes is pending when a background
	// insmod oopses the kernel: it ends at once with the crash's title.
	ko, err := mods.Path("crash_test")
	require.NoError(t, err)
	data, err := os.ReadFile(ko)
	require.NoError(t, err)
	g.MustWriteFile(t, "/tmp/crash_test.ko", data, 0o644)
	// So does waiting for a background program: one whose thread died in
	// an oops would never end.
	sleeper := g.MustSpawn(t, "/bin/sleep", "600")
	g.MustSpawn(t, "/bin/sh", "-c", "sleep 2; exec /bin/busybox insmod /tmp/crash_test.ko mode=null")
	execErr := make(chan error, 1)
	go func() {
		_, err := g.Exec(context.Background(), agent.Cmd{Argv: []string{"/bin/sleep", "600"}, Timeout: 20 * time.Minute})
		execErr <- err
	}()
	_, waitErr := sleeper.Wait(context.Background(), 20*time.Minute)
	var ce *vm.CrashError
	for what, err := range map[string]error{"a command": <-execErr, "waiting for a background program": waitErr} {
		require.ErrorAs(t, err, &ce, "%s pending while the kernel oopsed ends with the crash, not its own deadline", what)
		require.Contains(t, ce.Title, "NULL pointer dereference")
	}

	sub.runCleanups()
	require.Len(t, sub.errors, 1, "%v", sub.errors)
	require.Contains(t, sub.errors[0], "guest charged: kernel crash: BUG: kernel NULL pointer dereference")
	require.Contains(t, sub.attrs, "l45.crash="+ce.Title)

	next := &recorder{TB: t, name: t.Name() + "/parent/next", fatalExits: true}
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Use(next)
	}()
	<-done
	require.Len(t, next.errors, 1, "a crashed guest must be refused")
	require.Contains(t, next.errors[0], "crashed earlier (in "+sub.name)

	ev := g.Evidence().Path()
	parent.runCleanups()
	require.Empty(t, parent.errors, "the subtest's crash is not charged to the parent again")
	os.RemoveAll(ev)
}

func TestHungGuestIsAFailureWithItsConsoleNotAHang(t *testing.T) {
	g := vm.Boot(t, vm.WithName("frozen"))
	// Freeze the whole guest from the outside: the agent cannot answer.
	require.NoError(t, syscall.Kill(g.QEMUPid(), syscall.SIGSTOP))
	defer syscall.Kill(g.QEMUPid(), syscall.SIGCONT)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := g.Exec(ctx, agent.Cmd{Argv: []string{"/bin/true"}})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var ge *vm.GuestError
	require.ErrorAs(t, err, &ge)
	require.NotEmpty(t, ge.Console, "a guest that stopped answering is reported with its console")
	require.Less(t, time.Since(start), 30*time.Second, "the deadline must bound the wait")
	msg := err.Error()
	require.Contains(t, msg, "guest frozen")
	require.Contains(t, msg, "last console lines:")
	require.Contains(t, msg, "evidence: ")
	syscall.Kill(g.QEMUPid(), syscall.SIGCONT)
}
