package suites

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/pcapdns"
	"layer45/suites/suite"
)

const tagID = 101

// The first end-to-end proof: real dig in the client, real dnsmasq in the
// server, a tag module on each side matching the application by its
// process name. dig's query leaves tagged, the server strips the tag before
// dnsmasq reads it, dnsmasq's answer leaves tagged and the client strips
// it: dig gets its answer, the wire shows the tags both ways. dnsmasq's
// socket exists before its module (the readiness probe used it), so the
// server's module is registered with apply_now.
func TestR13_R5_DigThroughTagAndStrip(t *testing.T) {
	p := suite.NewPair(t)
	p.StartDnsmasq(t)
	p.Load(t, p.Server, "tag", suite.Params{"task_tgid": "dnsmasq", "protocol": 17, "tag": "L45SRV", "apply_now": 1})
	p.Load(t, p.Client, "tag", suite.Params{"task_tgid": "dig", "protocol": 17, "tag": "L45CLI"})

	r := p.Dig(t, "+short")
	require.NoError(t, r.Err())
	require.Equal(t, suite.DNSAnswer, strings.TrimSpace(string(r.Stdout)), "dig must get dnsmasq's answer through both modules")

	var queries, answers int
	for _, pk := range p.Wire(t) {
		if pk.Proto != "udp" {
			continue
		}
		switch {
		case pk.Dst.Port() == 53 && pk.Src.Addr().String() == suite.ClientIP:
			require.True(t, bytes.HasSuffix(pk.Payload, []byte("L45CLI")), "query on the wire lacks the client's tag: %q", pk.Payload)
			queries++
		case pk.Src.Port() == 53 && pk.Dst.Addr().String() == suite.ClientIP:
			require.True(t, bytes.HasSuffix(pk.Payload, []byte("L45SRV")), "answer on the wire lacks the server's tag: %q", pk.Payload)
			answers++
		}
	}
	require.Equal(t, 1, queries)
	require.Equal(t, 1, answers)

	srv := suite.Report(t, p.Server)
	m, deprecated, ok := srv.Find(tagID)
	require.True(t, ok, "server report: %+v", srv)
	require.False(t, deprecated)
	require.Equal(t, 1, m.Activated)
	require.Equal(t, 1, m.Count, "dnsmasq's one UDP socket is customized")
	cli := suite.Report(t, p.Client)
	m, _, ok = cli.Find(tagID)
	require.True(t, ok, "client report: %+v", cli)
	require.Equal(t, 0, m.Count, "dig has exited: its socket is gone and detached")
}

// Plain dig without modules, over UDP and TCP: the baseline the other
// tests change, decoded from the wire.
func TestR14_DigBaselineUDPAndTCPOnTheWire(t *testing.T) {
	p := suite.NewPair(t)
	p.StartDnsmasq(t)
	for _, transport := range []string{"+notcp", "+tcp"} {
		r := p.Dig(t, "+short", transport)
		require.NoError(t, r.Err())
		require.Equal(t, suite.DNSAnswer, strings.TrimSpace(string(r.Stdout)), transport)
	}
	msgs := pcapdns.Messages(p.Wire(t))
	for _, proto := range []string{"udp", "tcp"} {
		got := pcapdns.Filter(msgs, func(m pcapdns.Message) bool {
			return m.Proto == proto && m.Response && m.Question() == suite.DNSName+"."
		})
		require.Len(t, got, 1, "%s answers on the wire:\n%s", proto, pcapdns.Summary(msgs))
		require.Contains(t, got[0].Answers()[0], suite.DNSAnswer)
	}
}

// Loading and unloading a customization module twenty times while dig
// queries run in a loop: no crash (the harness fails the test on any
// kernel report), no hang, every unload succeeds, the module's history is
// in the Revoked list, and Layer 4.5 itself can be unloaded at the end —
// it holds a reference for every socket it tracks, so that proves none
// leaked.
func TestR15_LoadUnloadUnderTraffic(t *testing.T) {
	p := suite.NewPair(t)
	p.StartDnsmasq(t)
	loop := fmt.Sprintf(`i=0; ok=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); `+
		`if /usr/bin/dig +short +time=2 +tries=1 @%s %s A | grep -q '^%s$'; then ok=$((ok+1)); fi; done; echo "$ok/$i"`,
		suite.ServerIP, suite.DNSName, suite.DNSAnswer)
	ctx := context.Background()
	proc, err := p.Client.Spawn(ctx, "/bin/sh", "-c", loop)
	require.NoError(t, err)

	for i := 0; i < 20; i++ {
		p.Client.MustLoadModule(t, p.Mods, "tag", suite.Params{"task_tgid": "dig", "tag": "X"}.String())
		p.Server.MustLoadModule(t, p.Mods, "tag", suite.Params{"task_tgid": "dnsmasq", "tag": "X", "apply_now": 1}.String())
		time.Sleep(100 * time.Millisecond)
		require.NoError(t, p.Client.UnloadModule(context.Background(), "tag"), "round %d", i)
		require.NoError(t, p.Server.UnloadModule(context.Background(), "tag"), "round %d", i)
	}
	p.Client.MustRun(t, "/bin/touch", "/tmp/stop")
	res, err := proc.Wait(ctx, 60*time.Second)
	require.NoError(t, err)
	require.NoError(t, res.Err())
	var ok, total int
	_, err = fmt.Sscanf(strings.TrimSpace(string(res.Stdout)), "%d/%d", &ok, &total)
	require.NoError(t, err, "%q", res.Stdout)
	require.Greater(t, total, 0)
	t.Logf("dig loop: %d of %d queries answered while modules came and went", ok, total)

	rep := suite.Report(t, p.Client)
	require.Empty(t, rep.Installed)
	require.Len(t, rep.Revoked, 20, "every unregistration is in the history")

	// The client's sockets all closed with dig (the server's dnsmasq
	// socket still pins Layer 4.5 there, by design).
	if !p.Client.Kernel().Layer45Builtin {
		require.NoError(t, p.Client.UnloadModule(context.Background(), p.Mods.CoreName()), "Layer 4.5 must unload once its sockets are gone")
	}
}
