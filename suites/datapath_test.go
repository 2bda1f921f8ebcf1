package suites

// The data-path rules, R3-R9, and the regression tests of their known
// deviations (CONTRACT.md §4). Every test drives l45net (harness/traffic),
// which makes exactly the socket calls asked for and reports what the
// application saw, against an l45net echo server in the other guest, and
// asserts the three views: what the application saw (bytes, errno names,
// MSG_TRUNC), what crossed the wire (the link's capture), and what Layer
// 4.5 and the modules report (CUST_REPORT, module counters in sysfs, the
// kernel log).
//
// Modules in the client guest match l45net by process name, the protocol
// and the destination port; modules in the server guest match the echo
// server by its local (source) port. Every subtest uses ports of its own,
// so no socket of one subtest ever matches another's modules, and each
// subtest unloads its modules and stops its servers when it ends.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/vm"
	"layer45/suites/suite"
	"layer45/vmimages/traffic"
)

// dpMarkerPort is an echo server no module matches: suite.Barrier uses it
// to be sure everything sent before crossed the link.
const dpMarkerPort = 7000

// dpEchoPrefix is what the echo servers put before every echoed message.
const dpEchoPrefix = "P:"

func dpProto(proto string) int {
	if proto == "tcp" {
		return 6
	}
	return 17
}

// dpCli are the parameters that make a module in the client guest match
// l45net's sockets toward the server's port.
func dpCli(proto string, port int, extra suite.Params) suite.Params {
	p := suite.Params{"task_tgid": "l45net", "protocol": dpProto(proto), "dest_port": port}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// dpSrv are the parameters that make a module in the server guest match
// the echo server listening on port.
func dpSrv(proto string, port int, extra suite.Params) suite.Params {
	p := suite.Params{"task_tgid": "l45net", "protocol": dpProto(proto), "source_port": port}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// dpOps returns the report's ops of the given calls (send and sendmsg, or
// recvmsg), in order.
func dpOps(rep *traffic.Report, calls ...string) []traffic.Op {
	var out []traffic.Op
	for _, o := range rep.Ops {
		for _, c := range calls {
			if o.Call == c {
				out = append(out, o)
			}
		}
	}
	return out
}

func dpSends(rep *traffic.Report) []traffic.Op { return dpOps(rep, "send", "sendmsg") }
func dpRecvs(rep *traffic.Report) []traffic.Op { return dpOps(rep, "recvmsg") }

// dpRequireConnected fails unless a TCP client's connect succeeded.
func dpRequireConnected(t *testing.T, rep *traffic.Report) {
	t.Helper()
	c := rep.Calls("connect")
	require.Len(t, c, 1, "ops: %+v", rep.Ops)
	require.Empty(t, c[0].Errno, "connect: %+v", rep.Ops)
}

// dpRequireSentWhole fails unless every send succeeded and reported the
// whole message (sendmsg reports the kernel's real count).
func dpRequireSentWhole(t *testing.T, rep *traffic.Report, msgs []string) {
	t.Helper()
	s := dpSends(rep)
	require.Len(t, s, len(msgs), "ops: %+v", rep.Ops)
	for i, o := range s {
		require.Empty(t, o.Errno, "%s of %q failed: %+v", o.Call, msgs[i], o)
		require.Equal(t, len(msgs[i]), o.N, "%s of %q must report the whole message sent", o.Call, msgs[i])
	}
}

func dpPrefixed(msgs ...string) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, dpEchoPrefix+m)
	}
	return out
}

// TestR3_R4_DropAndError: the drop verdict (copy_length == 0) and the
// error verdict (copy_length < 0) on send and on receive, over UDP and TCP.
func TestR3_R4_DropAndError(t *testing.T) {
	p := suite.NewPair(t)
	marker := p.StartEcho(t, "udp", dpMarkerPort, "")

	// R3 send: nothing reaches the transport, the application is told the
	// whole message was sent (sendmsg with several iovecs reports the
	// kernel's real count).
	for _, tc := range []struct {
		proto string
		port  int
	}{{"udp", 7101}, {"tcp", 7102}} {
		p.Run(t, "R3/drop-send-"+tc.proto, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "drop", dpCli(tc.proto, tc.port, suite.Params{"on_recv": 0}))
			msgs := []string{"dropped-one", "dropped-two-longer"}
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: msgs, Segments: 3})
			if tc.proto == "tcp" {
				dpRequireConnected(t, rep)
			}
			dpRequireSentWhole(t, rep, msgs)
			p.Barrier(t, marker)
			wire := p.Payloads(t, tc.proto, tc.port, true)
			if tc.proto == "udp" {
				require.Empty(t, wire, "dropped datagrams crossed the wire")
			} else {
				require.Equal(t, []string{""}, wire, "the connection is made but no dropped byte may cross the wire")
			}
			require.Empty(t, echo.Data(t), "the server application received dropped messages")
		})
	}

	// R3 recv, blocking: the message is consumed, never delivered, and the
	// receive keeps waiting until SO_RCVTIMEO, then EAGAIN. D12: it
	// returned EAGAIN at once.
	for _, tc := range []struct {
		proto string
		port  int
	}{{"udp", 7103}, {"tcp", 7104}} {
		p.Run(t, "R3/D12-drop-recv-blocking-timeout-"+tc.proto, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "drop", dpCli(tc.proto, tc.port, suite.Params{"on_send": 0}))
			const timeout = time.Second
			rep, took, err := p.Client.Traffic(context.Background(), traffic.Client{Proto: tc.proto, To: echo.Addr(),
				Messages: []string{"never-delivered"}, Recv: true, Timeout: timeout})
			require.NoError(t, err)
			dpRequireSentWhole(t, rep, []string{"never-delivered"})
			r := dpRecvs(rep)
			require.Len(t, r, 1)
			require.Contains(t, []string{"EAGAIN", "EWOULDBLOCK"}, r[0].Errno,
				"a blocking receive whose message was dropped must time out: %+v", r[0])
			require.Empty(t, r[0].Data)
			require.GreaterOrEqual(t, took, timeout, "the receive must have waited for SO_RCVTIMEO")
			require.Equal(t, dpPrefixed("never-delivered"), dpJoinTCP(tc.proto, p.Payloads(t, tc.proto, tc.port, false)),
				"the echo did reach the client guest")
		})
	}

	// R3 recv, blocking: after the dropped message the receive keeps
	// waiting, and returns the next message that is not dropped. The drop
	// module's recv verdict is switched off (its on_recv parameter) once a
	// try_next module placed before it has counted the dropped message's
	// offer; then another datagram is sent to the client's socket.
	p.Run(t, "R3/D12-drop-recv-blocking-waits-for-next", func(t *testing.T) {
		const port, clientPort = 7105, 7905
		echo := p.StartEcho(t, "udp", port, dpEchoPrefix)
		p.Load(t, p.Client, "try_next", dpCli("udp", port, suite.Params{"priority": 10}))
		p.Load(t, p.Client, "drop", dpCli("udp", port, suite.Params{"priority": 20, "on_send": 0}))
		c := traffic.Client{Proto: "udp", To: echo.Addr(), From: suite.ClientIP + ":7905",
			Messages: []string{"first"}, Recv: true, Timeout: vm.Scale(3 * time.Second)}
		ctx := context.Background()
		proc, err := p.Client.Spawn(ctx, c.Args()...)
		require.NoError(t, err)
		vm.WaitFor(t, "the first echo to be offered to the client's modules", 20*time.Second, func() bool {
			return suite.ModParamInt(t, p.Client, "try_next", "calls") >= 2
		})
		suite.SetModParam(t, p.Client, "drop", "on_recv", "0")
		p.Server.MustTraffic(t, traffic.Client{Proto: "udp", To: suite.ClientIP + ":7905", Messages: []string{"second"}})
		res, err := proc.Wait(ctx, vm.Scale(10*time.Second))
		require.NoError(t, err)
		require.NoError(t, res.Err())
		rep, err := traffic.ParseReport(res.Stdout)
		require.NoError(t, err)
		r := dpRecvs(rep)
		require.Len(t, r, 1, "ops: %+v", rep.Ops)
		require.Empty(t, r[0].Errno, "%+v", r[0])
		require.Equal(t, "second", r[0].Data, "the dropped echo must never be delivered; the blocked receive returns the next message")
		require.Equal(t, dpPrefixed("first"), p.Payloads(t, "udp", port, false), "the dropped echo did cross the wire")
		require.Equal(t, 3, suite.ModParamInt(t, p.Client, "try_next", "calls"), "send, dropped echo, next message")
	})

	// R3 recv, non-blocking: the message is there (poll says so), the
	// module drops it, the receive says EAGAIN.
	p.Run(t, "R3/drop-recv-nonblocking-EAGAIN", func(t *testing.T) {
		const port = 7106
		echo := p.StartEcho(t, "udp", port, dpEchoPrefix)
		p.Load(t, p.Client, "try_next", dpCli("udp", port, suite.Params{"priority": 10}))
		p.Load(t, p.Client, "drop", dpCli("udp", port, suite.Params{"priority": 20, "on_send": 0}))
		rep := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"nb"},
			Recv: true, NonBlock: true, Timeout: vm.Scale(3 * time.Second)})
		dpRequireSentWhole(t, rep, []string{"nb"})
		r := dpRecvs(rep)
		require.Len(t, r, 1)
		require.Contains(t, []string{"EAGAIN", "EWOULDBLOCK"}, r[0].Errno, "%+v", r[0])
		require.Equal(t, 2, suite.ModParamInt(t, p.Client, "try_next", "calls"),
			"the echo was offered to the modules (and dropped) by that receive")
		require.Equal(t, dpPrefixed("nb"), p.Payloads(t, "udp", port, false))
	})

	// R4 send: the call fails with exactly the module's errno and nothing
	// reaches the transport. D1: copy_length was unsigned, so the error
	// verdict could never fire.
	for _, tc := range []struct {
		name, proto string
		port        int
		errno       string // module parameter
		want        string
	}{
		{"R4/D1-send-ECONNREFUSED-udp", "udp", 7111, "111", "ECONNREFUSED"},
		{"R4/send-EPERM-tcp", "tcp", 7112, "-1", "EPERM"},
	} {
		p.Run(t, tc.name, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "error", dpCli(tc.proto, tc.port, suite.Params{"errno": tc.errno, "on_recv": 0}))
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(),
				Messages: []string{"fails-1", "fails-2"}, Segments: 2})
			s := dpSends(rep)
			require.Len(t, s, 2, "ops: %+v", rep.Ops)
			for _, o := range s {
				require.Equal(t, tc.want, o.Errno, "the send must fail with exactly the module's errno: %+v", o)
			}
			p.Barrier(t, marker)
			wire := p.Payloads(t, tc.proto, tc.port, true)
			if tc.proto == "udp" {
				require.Empty(t, wire)
			} else {
				require.Equal(t, []string{""}, wire, "no byte of a failed send may cross the wire")
			}
			require.Empty(t, echo.Data(t))
		})
	}

	// R4 recv: the receive fails with exactly the errno; the message is
	// consumed (the next receive times out instead of failing again). D1
	// as on send.
	for _, tc := range []struct {
		name, proto string
		port        int
		errno       string
		want        string
	}{
		{"R4/D1-recv-EPERM-udp", "udp", 7113, "-1", "EPERM"},
		{"R4/recv-ECONNREFUSED-tcp", "tcp", 7114, "111", "ECONNREFUSED"},
	} {
		p.Run(t, tc.name, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "error", dpCli(tc.proto, tc.port, suite.Params{"errno": tc.errno, "on_send": 0}))
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(),
				Messages: []string{"reply-fails"}, Recv: true, ExtraRecv: 1, Timeout: time.Second})
			dpRequireSentWhole(t, rep, []string{"reply-fails"})
			r := dpRecvs(rep)
			require.Len(t, r, 2, "ops: %+v", rep.Ops)
			require.Equal(t, tc.want, r[0].Errno, "the receive must fail with exactly the module's errno: %+v", r[0])
			require.Empty(t, r[0].Data)
			require.Contains(t, []string{"EAGAIN", "EWOULDBLOCK"}, r[1].Errno,
				"the failed message must be consumed, not offered again: %+v", r[1])
			require.Equal(t, []string{"reply-fails"}, echo.Data(t))
			require.Equal(t, dpPrefixed("reply-fails"), dpJoinTCP(tc.proto, p.Payloads(t, tc.proto, tc.port, false)))
		})
	}

	// R4: a negative copy_length outside -4095..-1 becomes EIO, on send
	// and on receive.
	p.Run(t, "R4/out-of-range-EIO", func(t *testing.T) {
		const port = 7115
		echo := p.StartEcho(t, "udp", port, dpEchoPrefix)
		p.Load(t, p.Client, "error", dpCli("udp", port, suite.Params{"errno": 5000, "on_recv": 0}))
		rep := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"eio-send"}, Segments: 2})
		s := dpSends(rep)
		require.Len(t, s, 1)
		require.Equal(t, "EIO", s[0].Errno, "%+v", s[0])
		p.Barrier(t, marker)
		require.Empty(t, p.Payloads(t, "udp", port, true))

		suite.SetModParam(t, p.Client, "error", "on_send", "0")
		suite.SetModParam(t, p.Client, "error", "on_recv", "1")
		rep = p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"eio-recv"}, Recv: true})
		dpRequireSentWhole(t, rep, []string{"eio-recv"})
		r := dpRecvs(rep)
		require.Len(t, r, 1)
		require.Equal(t, "EIO", r[0].Errno, "%+v", r[0])
		require.Equal(t, []string{"eio-recv"}, echo.Data(t))
	})
}

// dpJoinTCP makes the per-connection TCP streams of Payloads comparable
// with the per-message expectations of a test that made one connection
// with one message: UDP datagrams are returned as they are.
func dpJoinTCP(proto string, wire []string) []string {
	if proto == "udp" {
		return wire
	}
	return []string{strings.Join(wire, "")}
}
