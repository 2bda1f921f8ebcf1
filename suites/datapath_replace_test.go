package suites

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/vm"
	"layer45/suites/suite"
	"layer45/vmimages/traffic"
)

// TestR5_R9_ReplaceAndSegments: the replace verdict (copy_length > 0) on
// send and receive, output larger than the application's buffer, output
// larger than the scratch buffer, and messages that are not one flat
// buffer (many iovecs on both ends; modules that walk the iterator).
func TestR5_R9_ReplaceAndSegments(t *testing.T) {
	p := suite.NewPair(t)
	marker := p.StartEcho(t, "udp", dpMarkerPort, "")

	// R5 replace: a tag appended on send is on the wire and stripped by
	// the peer's module before its application reads; the same happens to
	// the echo. R9 and D5: the client sends with sendto and receives into
	// one buffer, the echo server reads with recvmsg (UDP) or read (TCP)
	// into one buffer: single-buffer I/O, which newer kernels pass as
	// ITER_UBUF, is customized like any other.
	for _, tc := range []struct {
		proto string
		port  int
	}{{"udp", 7201}, {"tcp", 7202}} {
		p.Run(t, "R5/R9/D5-replace-tag-single-buffer-"+tc.proto, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "tag", dpCli(tc.proto, tc.port, suite.Params{"tag": "CT"}))
			p.Load(t, p.Server, "tag", dpSrv(tc.proto, tc.port, suite.Params{"tag": "CT"}))
			msgs := []string{"hello-1", "hello-22"}
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: msgs, Recv: true})
			dpRequireSentWhole(t, rep, msgs)
			require.Equal(t, dpPrefixed(msgs...), rep.Received(), "the client application reads the echoes without the tag")
			if tc.proto == "udp" {
				srv := suite.Report(t, p.Server)
				m, _, ok := srv.Find(tagID)
				require.True(t, ok, "server report: %+v", srv)
				require.Equal(t, 1, m.Count, "the echo server's socket is customized: %+v", srv)
			}
			require.Equal(t, msgs, echo.Data(t), "the server application reads the messages without the tag")
			toSrv, toCli := p.Payloads(t, tc.proto, tc.port, true), p.Payloads(t, tc.proto, tc.port, false)
			if tc.proto == "udp" {
				require.Equal(t, []string{"hello-1CT", "hello-22CT"}, toSrv)
				require.Equal(t, []string{"P:hello-1CT", "P:hello-22CT"}, toCli)
			} else {
				require.Equal(t, []string{"hello-1CThello-22CT"}, toSrv)
				require.Equal(t, []string{"P:hello-1CTP:hello-22CT"}, toCli)
			}
		})
	}

	// R5 send, TCP: a customized message far larger than the socket's
	// initial send buffer goes out in several transport writes; the
	// application is told its whole message went and every customized
	// byte reaches the peer, in order, the tag last. (The server's echoes
	// are dropped by a module there: unread echoes at the client's close
	// would reset the connection and cut the stream short.)
	p.Run(t, "R5/tcp-large-replace-no-byte-lost", func(t *testing.T) {
		const port = 7207
		echo := p.StartEcho(t, "tcp", port, "")
		p.Load(t, p.Client, "tag", dpCli("tcp", port, suite.Params{"tag": "END"}))
		p.Load(t, p.Server, "drop", dpSrv("tcp", port, suite.Params{"on_recv": 0}))
		var b strings.Builder
		for i := 0; b.Len() < 60000; i++ {
			fmt.Fprintf(&b, "%07d|", i)
		}
		msg := b.String()
		rep := p.Client.MustTraffic(t, traffic.Client{Proto: "tcp", To: echo.Addr(), Messages: []string{msg}, Segments: 3})
		dpRequireConnected(t, rep)
		dpRequireSentWhole(t, rep, []string{msg})
		want := msg + "END"
		var w []string
		for deadline := time.Now().Add(vm.Scale(3 * time.Second)); ; time.Sleep(50 * time.Millisecond) {
			w = p.Payloads(t, "tcp", port, true)
			if len(w) == 1 && len(w[0]) >= len(want) || time.Now().After(deadline) {
				break
			}
		}
		require.Len(t, w, 1, "one connection")
		require.True(t, w[0] == want, "the stream on the wire is not the message followed by END (%d bytes, want %d)", len(w[0]), len(want))
		require.Empty(t, strings.Join(p.Payloads(t, "tcp", port, false), ""), "the server's echoes were dropped")
	})

	// R5 recv, TCP: the module's output is larger than the application's
	// buffer; the rest is delivered by the next receives, in order. D13:
	// the original message was delivered instead.
	p.Run(t, "R5/D13-big-reply-tcp-rest-on-next-recv", func(t *testing.T) {
		const port = 7203
		echo := p.StartEcho(t, "tcp", port, "")
		p.Load(t, p.Client, "big_reply", dpCli("tcp", port, suite.Params{"times": 3}))
		rep := p.Client.MustTraffic(t, traffic.Client{Proto: "tcp", To: echo.Addr(), Messages: []string{"abcdefg"},
			Recv: true, RecvBuf: 8, ExtraRecv: 2, Timeout: 2 * time.Second})
		r := dpRecvs(rep)
		require.Len(t, r, 3, "ops: %+v", rep.Ops)
		for _, o := range r {
			require.Empty(t, o.Errno, "ops: %+v", rep.Ops)
			require.False(t, o.Trunc, "a stream never truncates: %+v", o)
		}
		require.Equal(t, []string{"abcdefga", "bcdefgab", "cdefg"}, rep.Received(),
			"21 customized bytes through an 8-byte buffer: 8, 8, then the last 5")
		require.Equal(t, []string{"abcdefg"}, p.Payloads(t, "tcp", port, false), "the wire carried the original echo")
	})

	// R5 recv, UDP: the module's output is larger than the application's
	// buffer; the datagram is truncated with MSG_TRUNC, the rest is gone.
	// D13 as on TCP.
	p.Run(t, "R5/D13-big-reply-udp-truncated-MSG_TRUNC", func(t *testing.T) {
		const port = 7204
		echo := p.StartEcho(t, "udp", port, "")
		p.Load(t, p.Client, "big_reply", dpCli("udp", port, suite.Params{"times": 3}))
		rep := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"abcdefg"},
			Recv: true, RecvBuf: 8, ExtraRecv: 1, Timeout: time.Second})
		r := dpRecvs(rep)
		require.Len(t, r, 2, "ops: %+v", rep.Ops)
		require.Empty(t, r[0].Errno, "%+v", r[0])
		require.Equal(t, 8, r[0].N)
		require.Equal(t, "abcdefga", r[0].Data)
		require.True(t, r[0].Trunc, "MSG_TRUNC must be reported: %+v", r[0])
		require.Contains(t, []string{"EAGAIN", "EWOULDBLOCK"}, r[1].Errno, "a datagram's cut-off rest is never delivered: %+v", r[1])
		require.Equal(t, []string{"abcdefg"}, p.Payloads(t, "udp", port, false))
	})

	// R5: copy_length > buf_size is a module bug: the call fails with
	// EMSGSIZE, a kernel log line names the module, nothing is sent and
	// nothing corrupted is delivered. D14: the original message was sent.
	for _, tc := range []struct {
		proto string
		port  int
	}{{"udp", 7205}, {"tcp", 7206}} {
		p.Run(t, "R5/D14-oversize-EMSGSIZE-"+tc.proto, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "oversize", dpCli(tc.proto, tc.port, suite.Params{"on_recv": 0}))
			// After the load: its own log line names the module too.
			cursor := suite.LogCursor(t, p.Client)
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: []string{"too-big"}, Segments: 2})
			s := dpSends(rep)
			require.Len(t, s, 1, "ops: %+v", rep.Ops)
			require.Equal(t, "EMSGSIZE", s[0].Errno, "%+v", s[0])
			p.Barrier(t, marker)
			wire := p.Payloads(t, tc.proto, tc.port, true)
			require.Empty(t, strings.Join(wire, ""), "nothing of a failed send may cross the wire")
			dpRequireLog(t, p, cursor, namesOversize, "names the oversize module")

			cursor = suite.LogCursor(t, p.Client)
			suite.SetModParam(t, p.Client, "oversize", "on_send", "0")
			suite.SetModParam(t, p.Client, "oversize", "on_recv", "1")
			rep = p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: []string{"reply-too-big"},
				Recv: true, ExtraRecv: 1, Timeout: time.Second})
			dpRequireSentWhole(t, rep, []string{"reply-too-big"})
			r := dpRecvs(rep)
			require.Len(t, r, 2, "ops: %+v", rep.Ops)
			require.Equal(t, "EMSGSIZE", r[0].Errno, "%+v", r[0])
			require.Empty(t, r[0].Data)
			require.Contains(t, []string{"EAGAIN", "EWOULDBLOCK"}, r[1].Errno, "nothing of the failed message is delivered later: %+v", r[1])
			require.Equal(t, []string{"reply-too-big"}, echo.Data(t))
			require.Equal(t, dpPrefixed("reply-too-big"), dpJoinTCP(tc.proto, p.Payloads(t, tc.proto, tc.port, false)))
			dpRequireLog(t, p, cursor, namesOversize, "names the oversize module")
		})
	}

	// I18, the EMSGSIZE log line in this implementation's words, on send
	// and on receive.
	p.Run(t, "I18/oversize-log-line-text", func(t *testing.T) {
		const port = 7216
		echo := p.StartEcho(t, "udp", port, dpEchoPrefix)
		p.Load(t, p.Client, "oversize", dpCli("udp", port, suite.Params{"on_recv": 0}))
		for _, dir := range []string{"send", "recv"} {
			if dir == "recv" {
				suite.SetModParam(t, p.Client, "oversize", "on_send", "0")
				suite.SetModParam(t, p.Client, "oversize", "on_recv", "1")
			}
			cursor := suite.LogCursor(t, p.Client)
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"too-big-" + dir},
				Recv: dir == "recv", Timeout: time.Second})
			ops := dpSends(rep)
			if dir == "recv" {
				ops = dpRecvs(rep)
			}
			require.Len(t, ops, 1, "ops: %+v", rep.Ops)
			require.Equal(t, "EMSGSIZE", ops[0].Errno, "%+v", ops[0])
			dpRequireLog(t, p, cursor, regexp.MustCompile(`customization 132: copy_length \d+ exceeds buf_size \d+, failing the `+dir+` with EMSGSIZE`),
				"in I18's words")
		}
	})

	// R5 recv: the modules are offered the whole message as the
	// transport has it, whatever the application's buffer; what the
	// deciding one outputs is then delivered in pieces (TCP) or cut with
	// MSG_TRUNC (UDP). The echo "P:abcdeTG" meets an application reading
	// 4 bytes at a time: peek counts the bytes it is offered and declines,
	// tag strips TG from a message ending with it. D15: the transport was
	// read with the application's size, so the modules saw "P:ab" and the
	// tag came through.
	for _, tc := range []struct {
		proto string
		port  int
	}{{"udp", 7208}, {"tcp", 7209}} {
		p.Run(t, "R5/D15-recv-modules-offered-whole-message-not-app-size-"+tc.proto, func(t *testing.T) {
			const msg = "abcdeTG"
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "peek", dpCli(tc.proto, tc.port, suite.Params{"priority": 10}))
			p.Load(t, p.Client, "tag", dpCli(tc.proto, tc.port, suite.Params{"priority": 20, "tag": "TG", "on_send": 0}))
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: []string{msg},
				Recv: true, RecvBuf: 4, ExtraRecv: 1, Timeout: time.Second})
			dpRequireSentWhole(t, rep, []string{msg})
			require.Equal(t, len(msg)+len(dpEchoPrefix+msg), suite.ModParamInt(t, p.Client, "peek", "bytes"),
				"peek was offered the whole message sent and the whole echo")
			r := dpRecvs(rep)
			require.Len(t, r, 2, "ops: %+v", rep.Ops)
			if tc.proto == "udp" {
				require.Empty(t, r[0].Errno, "%+v", r[0])
				require.Equal(t, "P:ab", r[0].Data)
				require.True(t, r[0].Trunc, "the stripped echo (7 bytes) exceeds the 4-byte buffer: MSG_TRUNC: %+v", r[0])
				require.Contains(t, []string{"EAGAIN", "EWOULDBLOCK"}, r[1].Errno, "%+v", r[1])
			} else {
				require.Equal(t, []string{"P:ab", "cde"}, rep.Received(), "the stripped echo, 4 bytes at a time: ops %+v", rep.Ops)
			}
			require.Equal(t, dpPrefixed(msg), dpJoinTCP(tc.proto, p.Payloads(t, tc.proto, tc.port, false)), "the echo on the wire")
		})
	}

	// R9: a message sent with sendmsg from many iovecs and received with
	// recvmsg into many buffers, through a module that reads it in 3-byte
	// steps with copy_from_iter_full, iov_iter_revert and iov_iter_advance
	// (it fails the call with EBADMSG if the pieces disagree).
	const long = "the-quick-brown-fox-jumps-over-the-lazy-dog-0123456789-ABCDEFGHIJ"
	for _, tc := range []struct {
		proto string
		port  int
	}{{"udp", 7211}, {"tcp", 7212}} {
		p.Run(t, "R9/many-iovecs-segments-module-"+tc.proto, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "segments", dpCli(tc.proto, tc.port, suite.Params{"chunk": 3}))
			p.Load(t, p.Server, "tag", dpSrv(tc.proto, tc.port, suite.Params{"tag": "SEG"}))
			msgs := []string{long, long[:31]}
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: msgs,
				Segments: 7, Recv: true, RecvBuf: len(dpEchoPrefix + long), RecvSegs: 5})
			require.Len(t, rep.Calls("sendmsg"), 2, "sendmsg with several iovecs: %+v", rep.Ops)
			dpRequireSentWhole(t, rep, msgs)
			for _, o := range dpRecvs(rep) {
				require.Empty(t, o.Errno, "ops: %+v", rep.Ops)
				require.False(t, o.Trunc, "%+v", o)
			}
			require.Equal(t, dpPrefixed(msgs...), rep.Received(), "the client's module stripped SEG from the echoes")
			require.Equal(t, msgs, echo.Data(t), "the server's module stripped SEG")
			wantTo := []string{long + "SEG", long[:31] + "SEG"}
			wantFrom := []string{"P:" + long + "SEG", "P:" + long[:31] + "SEG"}
			if tc.proto == "tcp" {
				wantTo, wantFrom = []string{strings.Join(wantTo, "")}, []string{strings.Join(wantFrom, "")}
			}
			require.Equal(t, wantTo, p.Payloads(t, tc.proto, tc.port, true))
			require.Equal(t, wantFrom, p.Payloads(t, tc.proto, tc.port, false))
		})
	}

	// R9: whatever a module does to src_iter does not matter to Layer
	// 4.5. The segments module walks the received message back and forth,
	// leaves the iterator in the middle and then declines (no_cust: the
	// echo has no SEG tag); the application gets the message intact, in
	// several buffers.
	// R9: a module that reads the whole message and leaves src_iter
	// exhausted, then declines. With try_next the next module (tag) still
	// sees the whole message; with no_cust the transport (send) and the
	// application (recv) still get all of it. Both directions, UDP and
	// TCP, sends from several iovecs.
	for _, tc := range []struct {
		proto string
		port  int
	}{{"udp", 7214}, {"tcp", 7215}} {
		p.Run(t, "R9/module-exhausts-src_iter-then-declines-"+tc.proto, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "peek", dpCli(tc.proto, tc.port, suite.Params{"priority": 10}))
			p.Load(t, p.Client, "tag", dpCli(tc.proto, tc.port, suite.Params{"tag": "TG", "priority": 20}))
			p.Load(t, p.Server, "tag", dpSrv(tc.proto, tc.port, suite.Params{"tag": "TG"}))

			// peek declines with try_next: tag appends and strips.
			msgs := []string{"iter-one", "iter-twenty-two"}
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: msgs, Segments: 3, Recv: true})
			dpRequireSentWhole(t, rep, msgs)
			require.Equal(t, dpPrefixed(msgs...), rep.Received(), "tag saw the whole echo after peek exhausted the iterator")
			read := 0
			for _, m := range msgs {
				read += len(m) + len("P:"+m+"TG")
			}
			require.Equal(t, 4, suite.ModParamInt(t, p.Client, "peek", "calls"))
			require.Equal(t, read, suite.ModParamInt(t, p.Client, "peek", "bytes"), "peek read every message whole")

			// peek declines with no_cust: the messages pass whole.
			suite.SetModParam(t, p.Client, "peek", "nocust", "1")
			rep = p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: []string{"passes-whole"}, Segments: 3, Recv: true})
			dpRequireSentWhole(t, rep, []string{"passes-whole"})
			require.Equal(t, []string{"P:passes-wholeTG"}, rep.Received(), "the echo reaches the application whole and unmodified")
			require.Equal(t, []string{"iter-one", "iter-twenty-two", "passes-whole"}, echo.Data(t))
			wantTo := []string{"iter-oneTG", "iter-twenty-twoTG", "passes-whole"}
			if tc.proto == "tcp" {
				wantTo = []string{strings.Join(wantTo[:2], ""), wantTo[2]}
			}
			require.Equal(t, wantTo, p.Payloads(t, tc.proto, tc.port, true), "the transport got every message whole")
		})
	}

	p.Run(t, "R9/module-moves-src_iter-message-intact", func(t *testing.T) {
		const port = 7213
		echo := p.StartEcho(t, "udp", port, dpEchoPrefix)
		p.Load(t, p.Client, "segments", dpCli("udp", port, suite.Params{"chunk": 5, "on_send": 0}))
		rep := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{long},
			Segments: 4, Recv: true, RecvBuf: len(dpEchoPrefix + long), RecvSegs: 3})
		dpRequireSentWhole(t, rep, []string{long})
		require.Equal(t, dpPrefixed(long), rep.Received())
		require.Equal(t, []string{long}, p.Payloads(t, "udp", port, true))
	})
}

// namesOversize matches a log line naming the oversize module, by its id
// or its name.
var namesOversize = regexp.MustCompile(`\b(132|oversize)\b`)

// dpRequireLog fails unless a line of the client's kernel log since cursor
// matches re (what says how, for the failure).
func dpRequireLog(t *testing.T, p *suite.Pair, cursor uint64, re *regexp.Regexp, what string) {
	t.Helper()
	lines := suite.LogSince(t, p.Client, cursor)
	for _, l := range lines {
		if re.MatchString(l) {
			return
		}
	}
	t.Fatalf("no kernel log line %s (%s); log since the call:\n%s", what, re, strings.Join(lines, "\n"))
}
