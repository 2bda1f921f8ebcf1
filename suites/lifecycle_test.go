package suites

// R15: lifecycle safety. Modules come and go under sustained TCP traffic,
// callbacks sleep while their module is unloaded or their process is
// killed, Layer 4.5 refuses to unload while sockets live (with I25's
// errno), and a failed non-blocking accept on a Layer 4.5 listener is an
// ordinary EAGAIN. The harness fails a test on any kernel report on the
// guests' consoles (oops, BUG, WARNING, lockdep, hung task), which is the
// "no crash" half of every subtest; a guest that stops answering fails it
// too ("no hang").

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/agent"
	"layer45/harness/vm"
	"layer45/suites/suite"
	"layer45/vmimages/traffic"
)

// TestLifecycle runs its guests with two vCPUs, so unloads, closes and
// callbacks race on two CPUs for real.
func TestLifecycle(t *testing.T) {
	p := suite.NewPair(t, vm.WithCPUs(2))
	suite.RequireCPUs(t, p, 2)
	p.Run(t, "R15/unload-and-load-during-sustained-tcp", func(t *testing.T) { r15UnloadUnderTCP(t, p) })
	p.Run(t, "R15/D19-unload-while-a-callback-sleeps", func(t *testing.T) { r15UnloadWhileSleeping(t, p) })
	p.Run(t, "R15/D4-kill-client-inside-a-sleeping-callback", func(t *testing.T) { r15KillInsideCallback(t, p) })
	p.Run(t, "R15/D6-nonblocking-accept-nothing-pending-EAGAIN", func(t *testing.T) { r15NonBlockingAccept(t, p) })
	p.Run(t, "R15/D18-core-unload-refused-with-live-sockets-then-succeeds", func(t *testing.T) { r15CoreUnloadBusy(t, p) })
	p.Run(t, "I25/core-unload-refused-with-EAGAIN", func(t *testing.T) { i25UnloadRefusedEAGAIN(t, p) })
}

// One TCP connection exchanges 150 messages with an echo server while a
// tag module (apply_now, so the live connection takes it) is loaded and
// unloaded in the client again and again. Every send and receive
// succeeds; the stream the server read is the client's messages, each
// tagged or not, in order and complete.
func r15UnloadUnderTCP(t *testing.T, p *suite.Pair) {
	const port, n = 7301, 150
	echo := p.StartEcho(t, "tcp", port, echoPrefix)
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("<%03d>", i)
	}
	c := traffic.Client{Proto: "tcp", To: echo.Addr(), Messages: msgs, Recv: true, Interval: 20 * time.Millisecond,
		Timeout: vm.Scale(5 * time.Second)}
	proc, err := p.Client.Spawn(context.Background(), c.Args()...)
	require.NoError(t, err)
	var res *agent.Result
	cycles := 0
	for res == nil {
		p.Client.MustLoadModule(t, p.Mods, "tag", suite.ClientTarget("tcp", port, suite.Params{"apply_now": 1, "tag": "~"}).String())
		time.Sleep(50 * time.Millisecond)
		p.Client.MustUnloadModule(t, "tag")
		cycles++
		r, err := proc.Wait(context.Background(), time.Millisecond)
		if err == nil {
			res = r
		} else if !errors.Is(err, agent.ErrStillRunning) {
			t.Fatalf("tcp client: %v", err)
		}
		if cycles > 200 {
			t.Fatalf("the TCP client did not finish after %d module cycles", cycles)
		}
	}
	require.NoError(t, res.Err())
	rep, err := traffic.ParseReport(res.Stdout)
	require.NoError(t, err)
	for _, op := range rep.Ops {
		require.Empty(t, op.Errno, "ops: %+v", rep.Ops)
	}
	require.Len(t, rep.Calls("send"), n)
	require.Len(t, rep.Calls("recvmsg"), n)

	// The server read every message in order, some tagged.
	stream := strings.Join(echo.Data(t), "")
	tagged := strings.Count(stream, "~")
	require.Equal(t, strings.Join(msgs, ""), strings.ReplaceAll(stream, "~", ""), "the server's stream")
	wire := p.WaitPayloads(t, "tcp", port, true, 1)
	require.Equal(t, stream, wire[0], "what crossed the wire is what the server read")
	require.Greater(t, tagged, 0, "the module never customized the live connection in %d cycles", cycles)
	t.Logf("%d load/unload cycles during %d messages; %d messages tagged", cycles, n, tagged)
	_, _, loaded := suite.Report(t, p.Client).Find(tagID)
	require.False(t, loaded)
}

// rmmod of a module whose callback is sleeping (delay_ms) waits for the
// callback and returns; the send it was working on completes. D19:
// callbacks ran into modules already unloaded (here: the sleeping one
// would wake up in freed module text).
func r15UnloadWhileSleeping(t *testing.T, p *suite.Pair) {
	const port = 7302
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	p.Client.MustLoadModule(t, p.Mods, "tag", suite.ClientTarget("udp", port, suite.Params{"delay_ms": 1500, "on_recv": 0, "tag": "Z"}).String())
	c := traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true, Messages: []string{"s"}, Recv: true, Timeout: vm.Scale(5 * time.Second)}
	proc, err := p.Client.Spawn(context.Background(), c.Args()...)
	require.NoError(t, err)
	waitInCallback(t, p.Client, proc.Pid)
	start := time.Now()
	p.Client.MustUnloadModule(t, "tag")
	t.Logf("rmmod took %v", time.Since(start))
	res, err := proc.Wait(context.Background(), vm.Scale(10*time.Second))
	require.NoError(t, err)
	require.NoError(t, res.Err())
	rep, err := traffic.ParseReport(res.Stdout)
	require.NoError(t, err)
	for _, op := range rep.Ops {
		require.Empty(t, op.Errno, "ops: %+v", rep.Ops)
	}
	// Whether the callback finished its message or the module was gone
	// first, the message went out whole: tagged or not.
	got := rep.Received()
	require.Len(t, got, 1)
	require.Contains(t, []string{"P:sZ", "P:s"}, got[0])
	r := suite.Report(t, p.Client)
	_, _, loaded := r.Find(tagID)
	require.False(t, loaded)
}

// waitInCallback waits until process pid sleeps inside the tag module's
// delay_ms callback, in a send or receive (the module names the sleeper).
func waitInCallback(t *testing.T, m *vm.Machine, pid int) {
	t.Helper()
	var seen int
	vm.WaitFor(t, fmt.Sprintf("l45net (pid %d) to sleep inside the module's callback", pid), 20*time.Second, func() bool {
		seen = suite.ModParamInt(t, m, "tag", "sleeper")
		return seen == pid
	})
}

func p2s(r *agent.Result, err error) string {
	if err != nil || r == nil {
		return ""
	}
	return string(r.Stdout)
}

// A client killed while its send sleeps in a callback: the socket closes
// under the module; the module's count drops to 0 and it unloads. D4: a
// spinlock was held across callbacks, so a sleeping one scheduled while
// atomic.
func r15KillInsideCallback(t *testing.T, p *suite.Pair) {
	const port = 7303
	echo := p.StartEcho(t, "tcp", port, echoPrefix)
	p.Load(t, p.Client, "tag", suite.ClientTarget("tcp", port, suite.Params{"delay_ms": 1000, "tag": "K"}))
	for i := 0; i < 3; i++ {
		c := traffic.Client{Proto: "tcp", To: echo.Addr(), Messages: []string{"k0", "k1", "k2"}, Recv: true, Timeout: vm.Scale(5 * time.Second)}
		proc, err := p.Client.Spawn(context.Background(), c.Args()...)
		require.NoError(t, err)
		waitInCallback(t, p.Client, proc.Pid)
		time.Sleep(time.Duration(150*i) * time.Millisecond)
		_, err = proc.Signal(context.Background(), 9)
		require.NoError(t, err)
	}
	vm.WaitFor(t, "the killed clients' sockets to be released", 20*time.Second, func() bool {
		e, _ := suite.Entry(t, p.Client, tagID)
		return e.Count == 0
	})
	// Still working: a new client is customized.
	p.Client.MustRun(t, "/bin/sh", "-c", "echo 0 > /sys/module/tag/parameters/delay_ms")
	r := p.Client.MustTraffic(t, traffic.Client{Proto: "tcp", To: echo.Addr(), Messages: []string{"ok"}, Recv: true, Timeout: vm.Scale(5 * time.Second)})
	require.Equal(t, []string{"P:ok"}, r.Received(), "tag appends K on send and strips it from the echo")
}

// D6: a failed non-blocking accept dereferenced NULL. The listener is a
// Layer 4.5 socket (all user IPv4 TCP sockets are) and a module matches
// its port; accept with nothing pending fails with EAGAIN, and the next
// connection is accepted and customized.
func r15NonBlockingAccept(t *testing.T, p *suite.Pair) {
	const port = 7304
	p.Load(t, p.Server, "tag", suite.ServerTarget("tcp", port, suite.Params{"tag": "A"}))
	probe := traffic.AcceptProbe{Listen: fmt.Sprintf("%s:%d", suite.ServerIP, port), Timeout: vm.Scale(10 * time.Second)}
	proc, err := p.Server.Spawn(context.Background(), probe.Args()...)
	require.NoError(t, err)
	p.Server.MustWaitListening(t, "tcp", port)
	// The client sends a tagged message by hand; the server's module strips
	// it from the accepted connection.
	p.Client.MustTraffic(t, traffic.Client{Proto: "tcp", To: probe.Listen, Messages: []string{"helloA"}, Timeout: vm.Scale(5 * time.Second)})
	res, err := proc.Wait(context.Background(), vm.Scale(20*time.Second))
	require.NoError(t, err)
	require.NoError(t, res.Err())
	rep, err := traffic.ParseReport(res.Stdout)
	require.NoError(t, err)
	require.Len(t, rep.Ops, 4, "ops: %+v", rep.Ops)
	require.Equal(t, traffic.Op{Call: "listen"}, rep.Ops[0])
	require.Equal(t, traffic.Op{Call: "accept", Errno: "EAGAIN"}, rep.Ops[1], "non-blocking accept with nothing pending")
	require.Equal(t, traffic.Op{Call: "accept"}, rep.Ops[2])
	require.Equal(t, "hello", rep.Ops[3].Data, "the accepted connection is customized (tag stripped)")
	require.Equal(t, []string{"helloA"}, p.WaitPayloads(t, "tcp", port, true, 1))
}

// D18: Layer 4.5 could be unloaded while customized sockets lived. It
// cannot be unloaded while a socket it tracks is open: rmmod is refused
// (with which errno is I25's), the guest and the live socket go on
// working, and once the socket is closed rmmod succeeds. Layer 4.5 is
// loaded again at the end.
func r15CoreUnloadBusy(t *testing.T, p *suite.Pair) {
	m := p.Client
	if m.Kernel().Layer45Builtin {
		t.Logf("Layer 4.5 is built into %s: there is no module to unload", m.Kernel().Release)
		return
	}
	const port = 7305
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	require.Empty(t, suite.Report(t, m).Installed, "no customization module may hold Layer 4.5 here")
	live := suite.StartLive(t, m, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"l0", "l1"}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
	live.Ready(t)
	for i := 0; i < 3; i++ {
		err := m.UnloadModule(context.Background(), p.Mods.CoreName())
		var me *agent.ModuleError
		require.True(t, errors.As(err, &me), "rmmod layer4_5 with a live socket must be refused, got %v", err)
	}
	rep := live.Finish(t)
	require.Equal(t, []string{"P:l0", "P:l1"}, rep.Received(), "the live socket kept working")
	var last error
	vm.WaitFor(t, "Layer 4.5 to unload after its last socket closed", 20*time.Second, func() bool {
		last = m.UnloadModule(context.Background(), p.Mods.CoreName())
		return last == nil
	})
	_, err := m.Control().Report(context.Background())
	require.Error(t, err, "no control interface without Layer 4.5")
	suite.LoadCore(t, m, p.Mods)
	suite.Report(t, m)
}

// I25: the refusal is EAGAIN (EWOULDBLOCK; rmmod says "in use"), while a
// socket created since Layer 4.5 was loaded is open and while a
// customization module is loaded.
func i25UnloadRefusedEAGAIN(t *testing.T, p *suite.Pair) {
	m := p.Client
	if m.Kernel().Layer45Builtin {
		t.Logf("Layer 4.5 is built into %s: there is no module to unload", m.Kernel().Release)
		return
	}
	refused := func(why string) {
		t.Helper()
		err := m.UnloadModule(context.Background(), p.Mods.CoreName())
		var me *agent.ModuleError
		require.True(t, errors.As(err, &me), "rmmod layer4_5 %s must be refused, got %v", why, err)
		require.Equal(t, syscall.EAGAIN, me.Errno, "rmmod layer4_5 %s: %v", why, me)
	}
	const port = 7306
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	live := suite.StartLive(t, m, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"e0", "e1"}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
	live.Ready(t)
	refused("with a live socket")
	require.Equal(t, []string{"P:e0", "P:e1"}, live.Finish(t).Received())
	p.Load(t, m, "tag", suite.Params{"dest_port": 9})
	refused("with a customization module loaded")
}
