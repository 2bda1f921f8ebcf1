package suite

// Helpers of the data-path suites (R3-R9): l45net echo servers in the
// server guest, l45net clients timed from the host, what crossed the wire
// per port (TCP streams reassembled), module parameters read and written
// through sysfs, and the guest's kernel log.

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"layer45/harness/pcapdns"
	"layer45/harness/vm"
	"layer45/vmimages/traffic"
)

// Echo is an l45net echo server running in the server guest: every message
// it receives is sent back prefixed with its prefix, and logged.
type Echo struct {
	Proto string
	Port  int
	m     *vm.Machine
	proc  *vm.Process
	lines []traffic.ServerLine
	done  bool
}

// StartEcho starts an echo server on ServerIP:port and waits until it is
// bound (UDP) or listening (TCP). It is stopped when t ends, unless Stop
// was called first.
func (p *Pair) StartEcho(t testing.TB, proto string, port int, prefix string) *Echo {
	t.Helper()
	s := traffic.Server{Proto: proto, Listen: fmt.Sprintf("%s:%d", ServerIP, port), Prefix: prefix}
	proc, err := p.Server.Spawn(context.Background(), s.Args()...)
	if err != nil {
		t.Fatalf("start echo server %s/%d: %v", proto, port, err)
	}
	e := &Echo{Proto: proto, Port: port, m: p.Server, proc: proc}
	t.Cleanup(func() {
		if !e.done && !p.Server.Exited() {
			e.proc.Stop(context.Background())
		}
	})
	p.Server.MustWaitListening(t, proto, port)
	return e
}

// Addr is the server's host:port.
func (e *Echo) Addr() string { return fmt.Sprintf("%s:%d", ServerIP, e.Port) }

// Stop ends the server and returns every message it handled, in order.
// Calling it again returns the same lines.
func (e *Echo) Stop(t testing.TB) []traffic.ServerLine {
	t.Helper()
	if e.done {
		return e.lines
	}
	e.done = true
	r, err := e.proc.Stop(context.Background())
	if err != nil {
		t.Fatalf("stop echo server %s/%d: %v", e.Proto, e.Port, err)
	}
	lines, err := traffic.ParseServerLog(r.Stdout)
	if err != nil {
		t.Fatalf("echo server %s/%d: %v (stderr %q)", e.Proto, e.Port, err, r.Stderr)
	}
	e.lines = lines
	return lines
}

// Data is what the application behind the server read, message by message
// (receive errors are left out, see Stop for those).
func (e *Echo) Data(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, l := range e.Stop(t) {
		if l.Err == "" {
			out = append(out, l.Data)
		}
	}
	return out
}

// Barrier sends one UDP message from the client to an echo server that no
// module matches and waits for its echo: everything the guests sent before
// has crossed the link (and is in the capture) once it returns.
func (p *Pair) Barrier(t testing.TB, marker *Echo) {
	t.Helper()
	msg := "barrier-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	rep := p.Client.MustTraffic(t, traffic.Client{Proto: "udp", To: marker.Addr(), Messages: []string{msg},
		Recv: true, Timeout: vm.Scale(5 * time.Second)})
	got := rep.Received()
	if len(got) != 1 || !strings.HasSuffix(got[0], msg) {
		t.Fatalf("barrier: the marker echo server did not answer: %+v", rep.Ops)
	}
}

// Payloads returns what crossed the wire between the client and the
// server's port, in one direction: toServer = client → server port,
// else server port → client. UDP: one string per datagram, in order.
// TCP: one string per connection, its byte stream reassembled in sequence
// order without retransmissions, connections in the order they started.
func (p *Pair) Payloads(t testing.TB, proto string, port int, toServer bool) []string {
	t.Helper()
	server := netip.MustParseAddr(ServerIP)
	client := netip.MustParseAddr(ClientIP)
	type key struct{ src, dst netip.AddrPort }
	var udp []string
	streams := map[key][]pcapdns.Packet{}
	var order []key
	for _, pk := range p.Wire(t) {
		if pk.Proto != proto {
			continue
		}
		var match bool
		if toServer {
			match = pk.Src.Addr() == client && pk.Dst.Addr() == server && int(pk.Dst.Port()) == port
		} else {
			match = pk.Src.Addr() == server && pk.Dst.Addr() == client && int(pk.Src.Port()) == port
		}
		if !match {
			continue
		}
		if proto == "udp" {
			udp = append(udp, string(pk.Payload))
			continue
		}
		k := key{pk.Src, pk.Dst}
		if _, ok := streams[k]; !ok {
			order = append(order, k)
		}
		streams[k] = append(streams[k], pk)
	}
	if proto == "udp" {
		return udp
	}
	var out []string
	for _, k := range order {
		out = append(out, string(stream(streams[k])))
	}
	return out
}

// stream reassembles one direction of a TCP connection (the SYN takes one
// sequence number; a gap ends the stream).
func stream(segs []pcapdns.Packet) []byte {
	var isn uint32
	var haveSYN bool
	for _, s := range segs {
		if s.SYN {
			isn, haveSYN = s.Seq+1, true
			break
		}
	}
	var data []pcapdns.Packet
	for _, s := range segs {
		if len(s.Payload) > 0 {
			data = append(data, s)
		}
	}
	if len(data) == 0 {
		return nil
	}
	sort.SliceStable(data, func(i, j int) bool { return int32(data[i].Seq-data[j].Seq) < 0 })
	next := data[0].Seq
	if haveSYN {
		next = isn
	}
	var out []byte
	for _, s := range data {
		off := int32(next - s.Seq)
		if off < 0 {
			break // the capture missed bytes
		}
		if int(off) >= len(s.Payload) {
			continue // a retransmission
		}
		out = append(out, s.Payload[off:]...)
		next += uint32(len(s.Payload)) - uint32(off)
	}
	return out
}

// ModParam reads /sys/module/<module>/parameters/<param> in m.
func ModParam(t testing.TB, m *vm.Machine, module, param string) string {
	t.Helper()
	return strings.TrimSpace(m.MustRun(t, "/bin/cat", "/sys/module/"+module+"/parameters/"+param))
}

// ModParamInt is ModParam for a number.
func ModParamInt(t testing.TB, m *vm.Machine, module, param string) int {
	t.Helper()
	s := ModParam(t, m, module, param)
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("guest %s: %s.%s = %q is not a number", m.Name, module, param, s)
	}
	return n
}

// SetModParam writes a writable module parameter in m.
func SetModParam(t testing.TB, m *vm.Machine, module, param, value string) {
	t.Helper()
	m.MustRun(t, "/bin/sh", "-c", fmt.Sprintf("echo %s > /sys/module/%s/parameters/%s", value, module, param))
}

// LogCursor is the position after m's last kernel log record.
func LogCursor(t testing.TB, m *vm.Machine) uint64 {
	t.Helper()
	_, next := kernelLog(t, m, 0)
	return next
}

// LogSince returns the text of m's kernel log records from cursor on.
func LogSince(t testing.TB, m *vm.Machine, cursor uint64) []string {
	t.Helper()
	lines, _ := kernelLog(t, m, cursor)
	return lines
}

func kernelLog(t testing.TB, m *vm.Machine, since uint64) ([]string, uint64) {
	t.Helper()
	recs, next, err := m.KernelLog(context.Background(), since)
	if err != nil {
		t.Fatalf("%v", err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Text)
	}
	return out, next
}

// Offers are the send offers of chain modules (chain_a … chain_f): how many
// messages each was asked about and when it was last asked (ktime ns).
type Offers map[string]struct {
	Calls int
	NS    int64
}

// SendOffers reads the send offers of the named chain modules in m, in one
// guest command so the stamps are consistent.
func SendOffers(t testing.TB, m *vm.Machine, modules ...string) Offers {
	t.Helper()
	var script strings.Builder
	for _, mod := range modules {
		fmt.Fprintf(&script, "echo %s $(cat /sys/module/%s/parameters/send_calls) $(cat /sys/module/%s/parameters/send_ns);", mod, mod, mod)
	}
	out := m.MustRun(t, "/bin/sh", "-c", script.String())
	o := Offers{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var name string
		var v struct {
			Calls int
			NS    int64
		}
		if _, err := fmt.Sscan(line, &name, &v.Calls, &v.NS); err != nil {
			t.Fatalf("guest %s: chain module offers: %q: %v", m.Name, line, err)
		}
		o[name] = v
	}
	return o
}

// AskedSince lists the modules asked about a message since before, in the
// order they were asked; each must have been asked exactly once (tests send
// one message between two readings).
func (o Offers) AskedSince(t testing.TB, before Offers) []string {
	t.Helper()
	var asked []string
	for name, now := range o {
		switch d := now.Calls - before[name].Calls; d {
		case 0:
		case 1:
			asked = append(asked, name)
		default:
			t.Fatalf("%s was asked %d times about one message", name, d)
		}
	}
	sort.Slice(asked, func(i, j int) bool { return o[asked[i]].NS < o[asked[j]].NS })
	return asked
}
