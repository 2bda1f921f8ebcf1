package suites

// R11 (active_mode) and R12 (deprecation) on live sockets. A suite.Live
// client keeps its socket open between messages and waits for the test,
// so a TOGGLE or DEPRECATE lands between two messages of one existing
// socket. Modules append on send only (on_recv=0): what they did shows
// on the wire and, through the echo server, in what the application
// receives.

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/vm"
	"layer45/suites/suite"
	"layer45/vmimages/traffic"
)

const (
	inactiveID = 107
	tag2ID     = 108
	echoPrefix = "P:"
)

// One pair of guests for the rules about which modules a socket gets and
// when they run (R11-R14), and this implementation's decisions there (I5,
// I7); every subtest uses its own ports and unloads its modules when it
// ends. The R13/R14 and decision bodies are in matching_test.go.
func TestActivationMatchingOrdering(t *testing.T) {
	p := suite.NewPair(t)
	p.Run(t, "R11/D3-inactive-attached-counted-not-called-toggle-live", func(t *testing.T) { r11ToggleLive(t, p) })
	p.Run(t, "R12/deprecated-keeps-its-sockets-never-attaches-anew", func(t *testing.T) { r12Deprecation(t, p) })
	p.Run(t, "R13/thread-name-vs-process-name-and-wildcards", func(t *testing.T) { r13ThreadNames(t, p) })
	p.Run(t, "R14/D16-protocol-address-port-connected-unconnected", func(t *testing.T) { r14Filters(t, p) })
	p.Run(t, "I5/unbound-udp-source-is-the-routed-address", func(t *testing.T) { i5UnboundSource(t, p) })
	p.Run(t, "R14/D8-at-most-five-lowest-priority-reorder-live-ties", func(t *testing.T) { r14FiveLowestAndReorder(t, p) })
	p.Run(t, "I7/priority-changes-reorder-never-attach", func(t *testing.T) { i7ReorderNeverAttaches(t, p) })
	p.Run(t, "R14/apply-now-existing-sockets", func(t *testing.T) { r14ApplyNow(t, p) })
	p.Run(t, "R14/D8-apply-now-only-into-free-slots", func(t *testing.T) { r14ApplyNowFreeSlots(t, p) })
	p.Run(t, "R16/report-count-follows-sockets", func(t *testing.T) { r16CountFollowsSockets(t, p) })
}

// The inactive module (activate=0) and tag both match one live UDP
// socket; the inactive module runs first (priority 10). inactive.c never
// looks at its own activate variable: only Layer 4.5 can keep it from
// running (D3: active_mode was only a convention).
func r11ToggleLive(t *testing.T, p *suite.Pair) {
	const port = 7101
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	p.Load(t, p.Client, "inactive", suite.ClientTarget("udp", port, suite.Params{"priority": 10, "on_recv": 0, "tag": "ACT"}))
	p.Load(t, p.Client, "tag", suite.ClientTarget("udp", port, suite.Params{"priority": 20, "on_recv": 0, "tag": "T"}))

	live := suite.StartLive(t, p.Client, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"m0", "m1", "m2"}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
	live.Ready(t)

	// Layer 4.5's view: attached and counted, reported inactive.
	e, dep := suite.Entry(t, p.Client, inactiveID)
	require.False(t, dep)
	require.Equal(t, 0, e.Activated, "report: inactive module")
	require.Equal(t, 1, e.Count, "the inactive module is attached to the live socket")
	e, _ = suite.Entry(t, p.Client, tagID)
	require.Equal(t, 1, e.Count)

	// TOGGLE on: the very next message of the same socket runs it.
	require.Equal(t, 1, suite.Result(t, p.Client, inactiveID, "TOGGLE 107 1 END"))
	require.Equal(t, 1, suite.ModParamInt(t, p.Client, "inactive", "activate"), "TOGGLE writes the module's activate variable")
	e, _ = suite.Entry(t, p.Client, inactiveID)
	require.Equal(t, 1, e.Activated)
	live.Step(t) // m1

	live.Ready(t)
	require.Equal(t, 1, suite.Result(t, p.Client, inactiveID, "TOGGLE 107 0 END"))
	e, _ = suite.Entry(t, p.Client, inactiveID)
	require.Equal(t, 0, e.Activated)
	require.Equal(t, 1, e.Count)
	rep := live.Finish(t) // m2

	// Application: m0 and m2 carry tag's T (the inactive module was
	// treated as declining, so tag was asked); m1 only ACT: the active
	// module decided it and tag was not asked (R8).
	require.Equal(t, []string{"P:m0T", "P:m1ACT", "P:m2T"}, rep.Received(), "ops: %+v", rep.Ops)
	// Wire: the same, as sent by the client.
	require.Equal(t, []string{"m0T", "m1ACT", "m2T"}, p.WaitPayloads(t, "udp", port, true, 3))
	// The socket is gone: nothing is attached any more.
	e, _ = suite.Entry(t, p.Client, inactiveID)
	require.Equal(t, 0, e.Count)
}

// Deprecation in both guests at once. Client guest: tag on an existing
// socket keeps working after DEPRECATE, a new socket does not get it.
// Server guest: tag2 on the echo server's long-lived socket keeps
// customizing its replies after DEPRECATE, even to new clients; a
// restarted server (a new socket) is not customized any more.
func r12Deprecation(t *testing.T, p *suite.Pair) {
	const port = 7102
	echo := p.StartEcho(t, "udp", port, echoPrefix)
	p.Load(t, p.Client, "tag", suite.ClientTarget("udp", port, suite.Params{"on_recv": 0, "tag": "C"}))
	p.Load(t, p.Server, "tag2", suite.ServerTarget("udp", port, suite.Params{"on_recv": 0, "tag": "S"}))
	timeout := vm.Scale(3 * time.Second)

	old := suite.StartLive(t, p.Client, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"a0", "a1"}, Recv: true, Timeout: timeout})
	old.Ready(t)

	require.Equal(t, 1, suite.Result(t, p.Client, tagID, "DEPRECATE 101 END"))
	require.Equal(t, 1, suite.Result(t, p.Server, tag2ID, "DEPRECATE 108 END"))
	// Already deprecated, unknown: Result 0.
	require.Equal(t, 0, suite.Result(t, p.Client, tagID, "DEPRECATE 101 END"), "second DEPRECATE")
	require.Equal(t, 0, suite.Result(t, p.Client, 4242, "DEPRECATE 4242 END"), "unknown id")

	e, dep := suite.Entry(t, p.Client, tagID)
	require.True(t, dep, "101 is listed as deprecated")
	require.Equal(t, 1, e.Count, "the old client socket keeps its module")
	e, dep = suite.Entry(t, p.Server, tag2ID)
	require.True(t, dep)
	require.Equal(t, 1, e.Count, "the server's socket keeps its module")
	require.Empty(t, suite.Report(t, p.Client).Installed)

	// A new client socket: not customized by the deprecated tag; the
	// server's old socket still tags the reply.
	fresh := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"b0"}, Recv: true, Timeout: timeout})
	require.Equal(t, []string{"P:b0S"}, fresh.Received(), "ops: %+v", fresh.Ops)
	// The old client socket still tags.
	got := old.Finish(t)
	require.Equal(t, []string{"P:a0CS", "P:a1CS"}, got.Received(), "ops: %+v", got.Ops)

	// Restart the server: its new socket is not customized.
	echo.Stop(t)
	echo = p.StartEcho(t, "udp", port, echoPrefix)
	again := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"c0"}, Recv: true, Timeout: timeout})
	require.Equal(t, []string{"P:c0"}, again.Received(), "ops: %+v", again.Ops)

	require.Equal(t, []string{"a0C", "b0", "a1C", "c0"}, p.WaitPayloads(t, "udp", port, true, 4), "client to server on the wire")
	require.Equal(t, []string{"P:a0CS", "P:b0S", "P:a1CS", "P:c0"}, p.WaitPayloads(t, "udp", port, false, 4), "server to client on the wire")

	e, _ = suite.Entry(t, p.Server, tag2ID)
	require.Equal(t, 0, e.Count, "the restarted server's socket never got the deprecated module")
	e, _ = suite.Entry(t, p.Client, tagID)
	require.Equal(t, 0, e.Count)
}
