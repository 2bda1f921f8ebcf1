package repro

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"layer45/harness/agent"
	"layer45/harness/console"
	"layer45/harness/pcapdns"
)

// dnsAnswer is the UDP packet of dnsmasq answering name with addr.
func dnsAnswer(t *testing.T, name, addr string) pcapdns.Packet {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r := new(dns.Msg)
	r.SetReply(q)
	rr, err := dns.NewRR(dns.Fqdn(name) + " 0 IN A " + addr)
	require.NoError(t, err)
	r.Answer = append(r.Answer, rr)
	b, err := r.Pack()
	require.NoError(t, err)
	return pcapdns.Packet{Proto: "udp", Src: netip.MustParseAddrPort(ServerIP + ":53"), Dst: netip.MustParseAddrPort(ClientIP + ":40000"), Payload: b}
}

// criteria parses a reproduced section over steps named send and serve.
func criteria(t *testing.T, yaml string) Criteria {
	t.Helper()
	text := "steps:\n  - {name: serve, guest: server, run: [dnsmasq], background: true}\n  - {name: send, guest: client, run: [l45net]}\nreproduced:\n" + yaml
	f, err := ParseBytes("x.yaml", []byte(text))
	require.NoError(t, err)
	return f.Reproduced
}

func TestJudge(t *testing.T) {
	tcp := func(seq uint32, data string) pcapdns.Packet {
		return pcapdns.Packet{Proto: "tcp", Src: netip.MustParseAddrPort(ClientIP + ":41000"), Dst: netip.MustParseAddrPort(ServerIP + ":7112"), Seq: seq, Payload: []byte(data)}
	}
	complete := &Observations{
		Results: map[string]*agent.Result{
			"send":  {ExitCode: 0, Stdout: []byte(`{"ops":[{"call":"sendmsg","n":-1,"errno":"EMSGSIZE"}]}`)},
			"serve": {ExitCode: -1, Signal: "SIGTERM"},
		},
		Crashes: map[string][]console.Report{Client: {{Title: "WARNING in l45_send"}}},
		Packets: []pcapdns.Packet{dnsAnswer(t, "probe.layer45.test", "10.9.8.7"), tcp(1, "fai"), tcp(4, "ls-1")},
	}
	stopped := &Observations{Results: map[string]*agent.Result{}, Stopped: "step send: the guest's kernel crashed"}

	for _, tc := range []struct {
		name, yaml string
		o          *Observations
		want       Truth
		why        string // in the lines
	}{
		{"crash by title", "  of: [crash: {title: WARNING}]", complete, True, "[yes] a kernel crash in any guest titled"},
		{"crash in the other guest", "  of: [crash: {guest: server}]", complete, False, "no kernel report"},
		{"a crash not seen on a run that stopped", "  of: [crash: {}]", stopped, Unknown, "the run stopped early"},
		{"answer on the wire", "  of: [dns: {name: probe.layer45.test, answer: 10.9.8.7}]", complete, True, "rcode=NOERROR"},
		{"the bug phrased as the answer missing", "  of: [{dns: {name: PROBE.layer45.test.}, not: true}]", complete, False, "[no] NOT a DNS response"},
		{"another answer", "  of: [dns: {name: probe.layer45.test, answer: 10.9.8.8}]", complete, False, "among 1 DNS messages"},
		{"missing answer on a stopped run is not the bug", "  of: [{dns: {name: probe.layer45.test}, not: true}]", stopped, Unknown, "[unknown]"},
		{"bytes across TCP segments", "  of: [wire: {text: fails-1, proto: tcp, port: 7112}]", complete, True, "carried them"},
		{"bytes on another port", "  of: [wire: {text: fails-1, port: 7000}]", complete, False, "not in any of 3 packets"},
		{"output as the bug: EPERM missing", "  when: all\n  of:\n    - exit: {step: send, status: 0}\n    - output: {step: send, stream: stdout, regexp: '\"errno\":\"EPERM\"'}\n      not: true", complete, True, "no match in"},
		{"stderr only", "  of: [output: {step: send, stream: stderr, regexp: EMSGSIZE}]", complete, False, ""},
		{"a background step stopped at the end", "  of: [exit: {step: serve, status: -1}]", complete, True, "killed by SIGTERM"},
		{"any: a yes beats an unknown", "  of: [exit: {step: send, status: 0}, crash: {}]", &Observations{Results: complete.Results, Stopped: "x"}, True, ""},
		{"any: an unknown beats a no", "  of: [exit: {step: send, status: 3}, crash: {}]", &Observations{Results: complete.Results, Stopped: "x"}, Unknown, ""},
		{"all: a no beats an unknown", "  when: all\n  of: [exit: {step: send, status: 3}, crash: {}]", &Observations{Results: complete.Results, Stopped: "x"}, False, ""},
		{"a step that never ran", "  of: [exit: {step: send, status: 0}]", stopped, Unknown, "the step never ended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, lines := Judge(criteria(t, tc.yaml), tc.o)
			require.Equal(t, tc.want, got, "%s", strings.Join(lines, "\n"))
			require.Contains(t, strings.Join(lines, "\n"), tc.why)
		})
	}
}
