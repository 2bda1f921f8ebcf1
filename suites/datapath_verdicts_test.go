package suites

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"layer45/suites/suite"
	"layer45/vmimages/traffic"
)

// TestR6_R7_R8_Verdicts: the three flags. no_cust skips one round,
// set_cust_to_skip skips for good (both directions, every module),
// try_next hands the message to the next module by priority, and the first
// module that does not decline decides the message alone (modules are
// alternatives, not a pipeline); and the verdicts are fresh before each
// callback (D2: stale no_cust/try_next flags disabled later
// customization).
func TestR6_R7_R8_Verdicts(t *testing.T) {
	p := suite.NewPair(t)

	// R6: no_cust on every message: each passes unmodified, and every
	// later message (both directions) is still offered to the module.
	for _, tc := range []struct {
		proto string
		port  int
	}{{"udp", 7301}, {"tcp", 7302}} {
		p.Run(t, "R6/no_cust-one-round-"+tc.proto, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "nocust", dpCli(tc.proto, tc.port, nil))
			msgs := []string{"n1", "n22", "n333"}
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: msgs, Recv: true})
			dpRequireSentWhole(t, rep, msgs)
			require.Equal(t, dpPrefixed(msgs...), rep.Received())
			require.Equal(t, msgs, echo.Data(t))
			require.Equal(t, 6, suite.ModParamInt(t, p.Client, "nocust", "calls"),
				"3 sends and 3 receives, each offered to the module")
			to := p.Payloads(t, tc.proto, tc.port, true)
			if tc.proto == "udp" {
				require.Equal(t, msgs, to, "unmodified on the wire")
			} else {
				require.Equal(t, []string{strings.Join(msgs, "")}, to, "unmodified on the wire")
			}
		})
	}

	// R7: skip_after tags the first 2 messages (its counter covers both
	// directions), then sets set_cust_to_skip: from then on the socket is
	// never customized again, in either direction, by any module. A tag
	// module ("OTH", after skip_after by priority) shares the socket: while
	// skip_after decides, it is never asked (R8), and once the socket is
	// skipped it must not be asked either, so OTH never appears. The
	// server's module appends "SKP" to every echo, so a receive that is
	// still customized would strip it.
	for _, tc := range []struct {
		proto string
		port  int
	}{{"udp", 7303}, {"tcp", 7304}} {
		p.Run(t, "R7/set_cust_to_skip-for-good-both-directions-all-modules-"+tc.proto, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "skip_after", dpCli(tc.proto, tc.port, suite.Params{"count": 2, "tag": "SKP", "priority": 10}))
			p.Load(t, p.Client, "tag", dpCli(tc.proto, tc.port, suite.Params{"tag": "OTH", "priority": 20}))
			p.Load(t, p.Server, "tag", dpSrv(tc.proto, tc.port, suite.Params{"tag": "SKP", "on_recv": 0}))
			msgs := []string{"m1", "m2", "m3", "m4"}
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: msgs, Recv: true})
			dpRequireSentWhole(t, rep, msgs)
			// m1 left as m1+SKP; its echo P:m1SKP+SKP lost one SKP
			// (skip_after, 2nd message): P:m1SKP. Then m2 set the
			// skip: nothing is touched any more, by any module.
			require.Equal(t, []string{"P:m1SKP", "P:m2SKP", "P:m3SKP", "P:m4SKP"}, rep.Received(),
				"after set_cust_to_skip no receive is customized")
			wantTo := []string{"m1SKP", "m2", "m3", "m4"}
			wantFrom := []string{"P:m1SKPSKP", "P:m2SKP", "P:m3SKP", "P:m4SKP"}
			require.Equal(t, wantTo, echo.Data(t))
			if tc.proto == "tcp" {
				wantTo, wantFrom = []string{strings.Join(wantTo, "")}, []string{strings.Join(wantFrom, "")}
			}
			require.Equal(t, wantTo, p.Payloads(t, tc.proto, tc.port, true), "after set_cust_to_skip no send is customized, by any module")
			require.Equal(t, wantFrom, p.Payloads(t, tc.proto, tc.port, false))
			require.Equal(t, 3, suite.ModParamInt(t, p.Client, "skip_after", "seen"),
				"two customized messages, the one that set the skip, then never called again")
		})
	}

	// R8: modules are asked by priority (not load order); declining
	// ones (chain_b with decline=1, try_next) pass the message to the
	// next; the first that does not decline (chain_c) decides it alone:
	// its output is what the transport (send) and the application (recv)
	// get, and chain_a after it is never asked. A pipeline would show
	// "ca" on the wire.
	p.Run(t, "R8/first-module-not-declining-decides-by-priority", func(t *testing.T) {
		const port = 7311
		echo := p.StartEcho(t, "udp", port, dpEchoPrefix)
		p.Load(t, p.Client, "chain_a", dpCli("udp", port, suite.Params{"priority": 30, "on_recv": 1}))
		p.Load(t, p.Client, "chain_b", dpCli("udp", port, suite.Params{"priority": 5, "on_recv": 1, "decline": 1}))
		p.Load(t, p.Client, "chain_c", dpCli("udp", port, suite.Params{"priority": 20, "on_recv": 1}))
		p.Load(t, p.Client, "try_next", dpCli("udp", port, suite.Params{"priority": 10}))
		chains := []string{"chain_a", "chain_b", "chain_c"}
		before := suite.SendOffers(t, p.Client, chains...)
		rep := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"x1"}, Recv: true})
		after := suite.SendOffers(t, p.Client, chains...)
		dpRequireSentWhole(t, rep, []string{"x1"})
		require.Equal(t, []string{"chain_b", "chain_c"}, after.AskedSince(t, before),
			"asked in priority order b (5), c (20); a (30) never, c decided")
		require.Equal(t, []string{"x1c"}, p.Payloads(t, "udp", port, true), "chain_c alone decided the send")
		require.Equal(t, []string{"P:x1cc"}, rep.Received(), "and the receive")
		require.Equal(t, 2, suite.ModParamInt(t, p.Client, "try_next", "calls"), "asked for the send and the receive")
		require.Equal(t, 0, suite.ModParamInt(t, p.Client, "chain_a", "recv_calls"), "never asked after a module decided")
	})

	// R8: a module that decides with a replace ends the round for every
	// later module, whatever they would do (tag first, chain_a second).
	p.Run(t, "R8/a-deciding-module-ends-the-round", func(t *testing.T) {
		const port = 7316
		echo := p.StartEcho(t, "udp", port, dpEchoPrefix)
		p.Load(t, p.Client, "tag", dpCli("udp", port, suite.Params{"priority": 10, "tag": "TG", "on_recv": 0}))
		p.Load(t, p.Client, "chain_a", dpCli("udp", port, suite.Params{"priority": 20, "on_recv": 1}))
		msgs := []string{"r1", "r2"}
		rep := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: msgs, Recv: true})
		dpRequireSentWhole(t, rep, msgs)
		require.Equal(t, []string{"r1TG", "r2TG"}, p.Payloads(t, "udp", port, true), "tag alone decided each send")
		require.Equal(t, []string{"P:r1TG", "P:r2TG"}, rep.Received(), "tag's no_cust decided each receive")
		require.Equal(t, 0, suite.ModParamInt(t, p.Client, "chain_a", "send_calls"))
		require.Equal(t, 0, suite.ModParamInt(t, p.Client, "chain_a", "recv_calls"))
	})

	// R8: when every module declines (try_next, and an inactive module
	// which counts as declining), the message passes unmodified. D3:
	// inactive modules were called anyway.
	p.Run(t, "R8/D3-all-decline-inactive-too-unmodified", func(t *testing.T) {
		const port = 7312
		echo := p.StartEcho(t, "udp", port, dpEchoPrefix)
		p.Load(t, p.Client, "try_next", dpCli("udp", port, suite.Params{"priority": 10}))
		p.Load(t, p.Client, "inactive", dpCli("udp", port, suite.Params{"priority": 20}))
		msgs := []string{"d1", "d22"}
		rep := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: msgs, Recv: true})
		dpRequireSentWhole(t, rep, msgs)
		require.Equal(t, dpPrefixed(msgs...), rep.Received())
		require.Equal(t, msgs, p.Payloads(t, "udp", port, true))
		require.Equal(t, msgs, echo.Data(t))
		require.Equal(t, 4, suite.ModParamInt(t, p.Client, "try_next", "calls"))
	})

	// D2, a stale try_next: try_next runs before a tag module on every
	// message; if its flag leaked into the tag module's verdict, the
	// tag's replace would be taken as a decline. Every message must be
	// tagged, every echo stripped.
	for _, tc := range []struct {
		proto string
		port  int
	}{{"udp", 7313}, {"tcp", 7314}} {
		p.Run(t, "R8/D2-stale-try_next-"+tc.proto, func(t *testing.T) {
			echo := p.StartEcho(t, tc.proto, tc.port, dpEchoPrefix)
			p.Load(t, p.Client, "try_next", dpCli(tc.proto, tc.port, suite.Params{"priority": 10}))
			p.Load(t, p.Client, "tag", dpCli(tc.proto, tc.port, suite.Params{"tag": "TG", "priority": 20}))
			msgs := []string{"s1", "s2", "s3", "s4", "s5", "s6"}
			rep := p.Client.MustTraffic(t, traffic.Client{Proto: tc.proto, To: echo.Addr(), Messages: msgs, Recv: true})
			dpRequireSentWhole(t, rep, msgs)
			var tagged, echoed []string
			for _, m := range msgs {
				tagged = append(tagged, m+"TG")
				echoed = append(echoed, "P:"+m+"TG")
			}
			require.Equal(t, tagged, echo.Data(t), "every message tagged")
			require.Equal(t, dpPrefixed(msgs...), rep.Received(), "every echo stripped")
			if tc.proto == "tcp" {
				tagged, echoed = []string{strings.Join(tagged, "")}, []string{strings.Join(echoed, "")}
			}
			require.Equal(t, tagged, p.Payloads(t, tc.proto, tc.port, true))
			require.Equal(t, echoed, p.Payloads(t, tc.proto, tc.port, false))
			require.Equal(t, 12, suite.ModParamInt(t, p.Client, "try_next", "calls"))
		})
	}

	// D2, a stale no_cust: the tag module (strip only, after try_next)
	// sets no_cust on every echo without the tag and strips the ones that
	// end with it; they alternate. If a no_cust (or try_next) flag
	// survived from one message to the next, the tagged echoes would come
	// through unstripped.
	p.Run(t, "R6/R8/D2-stale-no_cust", func(t *testing.T) {
		const port = 7315
		echo := p.StartEcho(t, "udp", port, dpEchoPrefix)
		p.Load(t, p.Client, "try_next", dpCli("udp", port, suite.Params{"priority": 10}))
		p.Load(t, p.Client, "tag", dpCli("udp", port, suite.Params{"tag": "TG", "priority": 20, "on_send": 0}))
		msgs := []string{"a1", "b1TG", "a2", "b2TG", "a3", "b3TG"}
		rep := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: msgs, Recv: true})
		dpRequireSentWhole(t, rep, msgs)
		require.Equal(t, msgs, p.Payloads(t, "udp", port, true), "sends pass unmodified (no_cust)")
		require.Equal(t, dpPrefixed(msgs...), p.Payloads(t, "udp", port, false))
		require.Equal(t, dpPrefixed("a1", "b1", "a2", "b2", "a3", "b3"), rep.Received(),
			"each tagged echo is stripped although the message before it set no_cust")
		require.Equal(t, 12, suite.ModParamInt(t, p.Client, "try_next", "calls"))
	})
}
