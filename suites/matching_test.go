package suites

// R13 (task names) and R14 (matching and ordering). The chain_a..chain_f
// modules count and time-stamp every send they are asked about; with
// decline=1 they all decline, so every module attached to a socket is asked
// about each message, in the socket's order (R8), and the message passes
// unmodified. suite.SendOffers reads which modules a message reached and
// in which order.

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/vm"
	"layer45/suites/suite"
	"layer45/vmimages/traffic"
)

// chainNames are the first n chain modules' names.
func chainNames(n int) []string {
	var names []string
	for _, c := range chains[:n] {
		names = append(names, c.name)
	}
	return names
}

// chain modules and their ids.
var chains = []struct {
	name string
	id   int
}{{"chain_a", 111}, {"chain_b", 112}, {"chain_c", 113}, {"chain_d", 114}, {"chain_e", 115}, {"chain_f", 116}}

func udpOnce(t *testing.T, p *suite.Pair, c traffic.Client) *traffic.Report {
	t.Helper()
	if c.Timeout == 0 {
		c.Timeout = vm.Scale(3 * time.Second)
	}
	c.Recv = true
	return p.Client.MustTraffic(t, c)
}

// r13ThreadNames: l45net makes its socket calls on a thread it can name;
// the process keeps the name l45net. task_name_pid is the thread's name,
// task_name_tgid the process's, and "*" matches any.
func r13ThreadNames(t *testing.T, p *suite.Pair) {
	const port = 7201
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	base := suite.Params{"protocol": 17, "dest_port": port, "on_recv": 0, "decline": 1}
	with := func(extra suite.Params) suite.Params {
		q := suite.Params{}
		for k, v := range base {
			q[k] = v
		}
		for k, v := range extra {
			q[k] = v
		}
		return q
	}
	// Thread named worker in process l45net.
	p.Load(t, p.Client, "chain_a", with(suite.Params{"task_pid": "worker", "task_tgid": "l45net", "priority": 10}))
	// The process's name as a thread name: only a thread still called l45net.
	p.Load(t, p.Client, "chain_b", with(suite.Params{"task_pid": "l45net", "task_tgid": "*", "priority": 20}))
	// The thread's name as a process name: matches nothing.
	p.Load(t, p.Client, "chain_c", with(suite.Params{"task_pid": "*", "task_tgid": "worker", "priority": 30}))
	// Wildcards on both names.
	p.Load(t, p.Client, "chain_d", with(suite.Params{"task_pid": "*", "task_tgid": "*", "priority": 40}))
	// Another program's name.
	p.Load(t, p.Client, "chain_e", with(suite.Params{"task_pid": "*", "task_tgid": "dig", "priority": 50}))

	names := chainNames(5)
	asked := func(c traffic.Client) (*traffic.Report, []string) {
		before := suite.SendOffers(t, p.Client, names...)
		r := udpOnce(t, p, c)
		return r, suite.SendOffers(t, p.Client, names...).AskedSince(t, before)
	}
	named, got := asked(traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"w"}, ThreadName: "worker"})
	require.Equal(t, "worker", named.ThreadComm)
	require.Equal(t, "l45net", named.Comm)
	require.Equal(t, []string{"chain_a", "chain_d"}, got, "thread worker of l45net: chain_a (pid+tgid) and chain_d (wildcards)")

	plain, got := asked(traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"x"}})
	require.Equal(t, "l45net", plain.ThreadComm)
	require.Equal(t, []string{"chain_b", "chain_d"}, got, "thread l45net of l45net: chain_b (pid) and chain_d")

	_, got = asked(traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"y"}, ThreadName: "other"})
	require.Equal(t, []string{"chain_d"}, got, "thread other: only the wildcards match")

	require.Equal(t, []string{"w", "x", "y"}, p.WaitPayloads(t, "udp", port, true, 3), "every module declined")
	for _, c := range chains[:5] {
		e, _ := suite.Entry(t, p.Client, c.id)
		require.Equal(t, 0, e.Count, "%s: every client socket has closed", c.name)
	}
}

// r14Filters: protocol, destination/source address and port, connected
// and unconnected UDP (D16: a connected UDP socket never matched). All
// priorities are equal, so modules are asked in registration order.
// Sockets matched on their source address bind it: what an unbound
// socket's source address is, is I5's.
func r14Filters(t *testing.T, p *suite.Pair) {
	const port, port2, srcPort = 7202, 7203, 40123
	udp := p.StartEcho(t, "udp", port, echoPrefix)
	tcp := p.StartEcho(t, "tcp", port, echoPrefix)
	udp2 := p.StartEcho(t, "udp", port2, echoPrefix)
	any := func(extra suite.Params) suite.Params {
		q := suite.Params{"task_tgid": "l45net", "on_recv": 0, "priority": 50, "decline": 1}
		for k, v := range extra {
			q[k] = v
		}
		return q
	}
	p.Load(t, p.Client, "chain_a", any(suite.Params{"protocol": 6, "dest_port": port}))
	p.Load(t, p.Client, "chain_b", any(suite.Params{"protocol": 17, "dest_ip": suite.ServerIP, "dest_port": port}))
	p.Load(t, p.Client, "chain_c", any(suite.Params{"protocol": 256, "dest_ip": "10.0.0.99"}))
	p.Load(t, p.Client, "chain_d", any(suite.Params{"protocol": 256, "source_ip": suite.ClientIP, "dest_port": port2}))
	p.Load(t, p.Client, "chain_e", any(suite.Params{"protocol": 17, "source_port": srcPort}))
	p.Load(t, p.Client, "chain_f", any(suite.Params{"protocol": 256, "source_ip": "10.0.0.41"}))

	names := chainNames(6)
	cases := []struct {
		name  string
		c     traffic.Client
		asked []string
	}{
		{"tcp to port: protocol 6 only", traffic.Client{Proto: "tcp", To: tcp.Addr(), Messages: []string{"t1"}}, []string{"chain_a"}},
		{"connected udp to port: protocol 17 + dest_ip + dest_port", traffic.Client{Proto: "udp", To: udp.Addr(), Connect: true, Messages: []string{"u1"}}, []string{"chain_b"}},
		{"unconnected udp: the message's address is the flow", traffic.Client{Proto: "udp", To: udp.Addr(), Messages: []string{"u2"}}, []string{"chain_b"}},
		{"udp to port2 bound to the client's address: source_ip + dest_port", traffic.Client{Proto: "udp", To: udp2.Addr(), From: suite.ClientIP + ":0", Messages: []string{"u3"}}, []string{"chain_d"}},
		{"udp to port2 from a bound source port", traffic.Client{Proto: "udp", To: udp2.Addr(), From: fmt.Sprintf("%s:%d", suite.ClientIP, srcPort), Messages: []string{"u4"}}, []string{"chain_d", "chain_e"}},
	}
	for _, tc := range cases {
		before := suite.SendOffers(t, p.Client, names...)
		r := udpOnce(t, p, tc.c)
		require.Equal(t, tc.asked, suite.SendOffers(t, p.Client, names...).AskedSince(t, before), "%s: ops %+v", tc.name, r.Ops)
		require.Len(t, r.Received(), 1, "%s: ops %+v", tc.name, r.Ops)
	}
	require.Equal(t, []string{"u1", "u2"}, p.WaitPayloads(t, "udp", port, true, 2))
	require.Equal(t, []string{"u3", "u4"}, p.WaitPayloads(t, "udp", port2, true, 2))
	require.Equal(t, []string{"t1"}, p.WaitPayloads(t, "tcp", port, true, 1))
}

// loadSixChains loads chain_a … chain_f in the client, declining every
// message to the server's UDP port, registered in that order with
// priorities descending (60 … 10): chain_f is lowest, chain_a left out.
func loadSixChains(t *testing.T, p *suite.Pair, port int) {
	t.Helper()
	for i, c := range chains {
		p.Load(t, p.Client, c.name, suite.ClientTarget("udp", port, suite.Params{"priority": 60 - 10*i, "on_recv": 0, "decline": 1}))
	}
}

// r14FiveLowestAndReorder: six modules match one socket; exactly five
// attach, the five lowest priority values, asked in priority order (D8:
// a sixth module overran the 5-slot array). A PRIORITY change re-orders a
// live socket before its next message. With equal priorities,
// registration order decides.
func r14FiveLowestAndReorder(t *testing.T, p *suite.Pair) {
	const port = 7204
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	loadSixChains(t, p, port)
	names := chainNames(6)
	before := suite.SendOffers(t, p.Client, names...)
	live := suite.StartLive(t, p.Client, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"m0", "m1"}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
	live.Ready(t) // m0 went out; the socket waits before m1
	after := suite.SendOffers(t, p.Client, names...)
	require.Equal(t, []string{"chain_f", "chain_e", "chain_d", "chain_c", "chain_b"}, after.AskedSince(t, before),
		"the five lowest priority values, lowest first")
	for _, c := range chains {
		e, _ := suite.Entry(t, p.Client, c.id)
		want := 1
		if c.name == "chain_a" {
			want = 0 // the highest priority value is left out
		}
		require.Equal(t, want, e.Count, "%s attached sockets", c.name)
	}
	// f (10) moves behind b (50).
	require.Equal(t, 1, suite.Result(t, p.Client, 116, "PRIORITY 116 55 END"))
	require.Equal(t, 55, suite.ModParamInt(t, p.Client, "chain_f", "priority"))
	rep := live.Finish(t)
	require.Equal(t, []string{"chain_e", "chain_d", "chain_c", "chain_b", "chain_f"},
		suite.SendOffers(t, p.Client, names...).AskedSince(t, after), "m1 after the re-order")
	require.Equal(t, []string{"P:m0", "P:m1"}, rep.Received(), "ops: %+v", rep.Ops)

	// Ties: every priority equal, a new socket gets the first five
	// registered, asked in registration order.
	for _, c := range chains {
		require.Equal(t, 1, suite.Result(t, p.Client, c.id, fmt.Sprintf("PRIORITY %d 7 END", c.id)))
	}
	before = suite.SendOffers(t, p.Client, names...)
	tie := udpOnce(t, p, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true, Messages: []string{"n"}})
	require.Equal(t, []string{"chain_a", "chain_b", "chain_c", "chain_d", "chain_e"},
		suite.SendOffers(t, p.Client, names...).AskedSince(t, before))
	require.Equal(t, []string{"P:n"}, tie.Received())
	require.Equal(t, []string{"m0", "m1", "n"}, p.WaitPayloads(t, "udp", port, true, 3))
}

// i5UnboundSource: I5, a socket bound to INADDR_ANY has as its source
// address the one routing picks toward the peer, so an unbound UDP client
// matches a module targeting the client guest's address.
func i5UnboundSource(t *testing.T, p *suite.Pair) {
	const port = 7209
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	p.Load(t, p.Client, "chain_a", suite.ClientTarget("udp", port, suite.Params{"source_ip": suite.ClientIP, "on_recv": 0, "decline": 1}))
	before := suite.SendOffers(t, p.Client, "chain_a")
	r := udpOnce(t, p, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"i5"}})
	require.Equal(t, []string{"chain_a"}, suite.SendOffers(t, p.Client, "chain_a").AskedSince(t, before), "ops %+v", r.Ops)
	require.Equal(t, []string{"P:i5"}, r.Received())
}

// i7ReorderNeverAttaches: I7, a socket's priorities are re-read before
// each message, so a write to a module's own priority parameter re-orders
// like PRIORITY; and re-ordering never changes which modules a socket
// has: a module left out for its priority stays out once its priority is
// the best.
func i7ReorderNeverAttaches(t *testing.T, p *suite.Pair) {
	const port = 7208
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	loadSixChains(t, p, port)
	names := chainNames(6)
	live := suite.StartLive(t, p.Client, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"m0", "m1"}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
	live.Ready(t) // m0 went out: chain_b … chain_f attached, chain_a (60) left out
	e, _ := suite.Entry(t, p.Client, chains[0].id)
	require.Equal(t, 0, e.Count, "chain_a is left out")
	before := suite.SendOffers(t, p.Client, names...)
	suite.SetModParam(t, p.Client, "chain_f", "priority", "55")
	require.Equal(t, 1, suite.Result(t, p.Client, chains[0].id, "PRIORITY 111 1 END"))
	rep := live.Finish(t)
	require.Equal(t, []string{"chain_e", "chain_d", "chain_c", "chain_b", "chain_f"},
		suite.SendOffers(t, p.Client, names...).AskedSince(t, before), "m1: chain_f (sysfs: 10 → 55) last, chain_a (1) still out")
	require.Equal(t, []string{"P:m0", "P:m1"}, rep.Received(), "ops: %+v", rep.Ops)
}

// r14ApplyNow: a socket tracked before two modules were registered gets,
// on its next message, the one registered with apply_now and not the
// other; a socket tracked afterwards gets both. The one without apply_now
// comes first by priority, so it decides whenever it is attached (R8).
func r14ApplyNow(t *testing.T, p *suite.Pair) {
	const port = 7205
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	live := suite.StartLive(t, p.Client, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"m0", "m1", "m2"}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
	live.Ready(t) // m0 went out with no module: the socket is tracked
	p.Load(t, p.Client, "tag", suite.ClientTarget("udp", port, suite.Params{"apply_now": 1, "priority": 10, "on_recv": 0, "tag": "N"}))
	p.Load(t, p.Client, "tag2", suite.ClientTarget("udp", port, suite.Params{"apply_now": 0, "priority": 5, "on_recv": 0, "tag": "L"}))
	live.Step(t) // m1
	live.Ready(t)
	e, _ := suite.Entry(t, p.Client, tagID)
	require.Equal(t, 1, e.Count, "apply_now: the existing socket took the module")
	e, _ = suite.Entry(t, p.Client, tag2ID)
	require.Equal(t, 0, e.Count, "without apply_now the existing socket is left alone")
	rep := live.Finish(t)
	require.Equal(t, []string{"P:m0", "P:m1N", "P:m2N"}, rep.Received(), "ops: %+v", rep.Ops)
	later := suite.StartLive(t, p.Client, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"n0", "n1"}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
	later.Ready(t) // n0 went out: the socket is tracked
	for _, id := range []int{tagID, tag2ID} {
		e, _ := suite.Entry(t, p.Client, id)
		require.Equal(t, 1, e.Count, "module %d: a socket tracked afterwards gets both", id)
	}
	require.Equal(t, []string{"P:n0L", "P:n1L"}, later.Finish(t).Received())
	require.Equal(t, []string{"m0", "m1N", "m2N", "n0L", "n1L"}, p.WaitPayloads(t, "udp", port, true, 5))
}

// r14ApplyNowFreeSlots: apply_now offers a module to existing sockets only
// while they have a free slot (D8: a sixth module overran the 5-slot
// array). A live socket with three modules takes two of three
// apply_now modules and no more; then it is full and a module with a
// better priority than all of them is still not attached.
func r14ApplyNowFreeSlots(t *testing.T, p *suite.Pair) {
	const port = 7206
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	for i, c := range chains[:3] {
		p.Load(t, p.Client, c.name, suite.ClientTarget("udp", port, suite.Params{"priority": 10 * (i + 1), "on_recv": 0, "decline": 1}))
	}
	live := suite.StartLive(t, p.Client, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"m0", "m1", "m2"}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
	live.Ready(t) // m0: tracked with chain_a..c
	for i, c := range chains[3:6] {
		p.Load(t, p.Client, c.name, suite.ClientTarget("udp", port, suite.Params{"priority": 40 + i, "on_recv": 0, "decline": 1, "apply_now": 1}))
	}
	live.Step(t) // m1: the apply_now modules are offered
	live.Ready(t)
	attached := 0
	for _, c := range chains[3:6] {
		e, _ := suite.Entry(t, p.Client, c.id)
		attached += e.Count
	}
	require.Equal(t, 2, attached, "three apply_now modules, two free slots")
	for _, c := range chains[:3] {
		e, _ := suite.Entry(t, p.Client, c.id)
		require.Equal(t, 1, e.Count, "%s keeps its slot", c.name)
	}
	// Full now: a better-priority apply_now module stays out.
	p.Load(t, p.Client, "tag", suite.ClientTarget("udp", port, suite.Params{"priority": 1, "on_recv": 0, "apply_now": 1, "tag": "X"}))
	before := suite.SendOffers(t, p.Client, chainNames(6)...)
	rep := live.Finish(t) // m2
	asked := suite.SendOffers(t, p.Client, chainNames(6)...).AskedSince(t, before)
	require.Len(t, asked, 5, "five modules asked about m2: %v", asked)
	e, _ := suite.Entry(t, p.Client, tagID)
	require.Equal(t, 0, e.Count, "a full socket takes no sixth module")
	require.Equal(t, []string{"P:m0", "P:m1", "P:m2"}, rep.Received(), "every module declined; the tag module never ran")
}

// r16CountFollowsSockets: CUST_REPORT's Count is the number of live
// sockets a module is attached to: it rises when a socket is tracked and
// falls back when the socket closes.
func r16CountFollowsSockets(t *testing.T, p *suite.Pair) {
	const port = 7207
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	p.Load(t, p.Client, "nocust", suite.ClientTarget("udp", port, nil))
	e, _ := suite.Entry(t, p.Client, 104)
	require.Equal(t, 0, e.Count, "no socket yet")
	var lives []*suite.Live
	for range 2 {
		l := suite.StartLive(t, p.Client, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
			Messages: []string{"a", "b"}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
		l.Ready(t)
		lives = append(lives, l)
	}
	e, _ = suite.Entry(t, p.Client, 104)
	require.Equal(t, 2, e.Count, "two live sockets")
	lives[0].Finish(t)
	vm.WaitFor(t, "Count to drop to 1 after a close", 10*time.Second, func() bool {
		e, _ = suite.Entry(t, p.Client, 104)
		return e.Count == 1
	})
	lives[1].Finish(t)
	vm.WaitFor(t, "Count to drop to 0 after the last close", 10*time.Second, func() bool {
		e, _ = suite.Entry(t, p.Client, 104)
		return e.Count == 0
	})
}
