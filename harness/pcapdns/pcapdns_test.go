package pcapdns

import (
	"encoding/binary"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

type frame struct {
	udp          bool
	src, dst     string
	sport, dport uint16
	seq          uint32
	payload      []byte
}

func writeCapture(t *testing.T, frames []frame) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.pcap")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	w := pcapgo.NewWriter(f)
	require.NoError(t, w.WriteFileHeader(65536, layers.LinkTypeEthernet))
	ts := time.Unix(1700000000, 0)
	for i, fr := range frames {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: net.ParseIP(fr.src).To4(), DstIP: net.ParseIP(fr.dst).To4()}
		var tl gopacket.SerializableLayer
		if fr.udp {
			ip.Protocol = layers.IPProtocolUDP
			u := &layers.UDP{SrcPort: layers.UDPPort(fr.sport), DstPort: layers.UDPPort(fr.dport)}
			u.SetNetworkLayerForChecksum(ip)
			tl = u
		} else {
			ip.Protocol = layers.IPProtocolTCP
			tc := &layers.TCP{SrcPort: layers.TCPPort(fr.sport), DstPort: layers.TCPPort(fr.dport), Seq: fr.seq, ACK: true, PSH: true, Window: 1000}
			tc.SetNetworkLayerForChecksum(ip)
			tl = tc
		}
		buf := gopacket.NewSerializeBuffer()
		require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
			eth, ip, tl, gopacket.Payload(fr.payload)))
		data := buf.Bytes()
		require.NoError(t, w.WritePacket(gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(data), Length: len(data)}, data))
	}
	return path
}

func packed(t *testing.T, m *dns.Msg) []byte {
	b, err := m.Pack()
	require.NoError(t, err)
	return b
}

var update = flag.Bool("update", false, "rewrite golden files")

func TestDecodeUDPAndReassembledTCP(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("probe.layer45.test.", dns.TypeA)
	q.Id = 4242
	resp := new(dns.Msg)
	resp.SetReply(q)
	rr, err := dns.NewRR("probe.layer45.test. 0 IN A 10.9.8.7")
	require.NoError(t, err)
	resp.Answer = append(resp.Answer, rr)

	tcpQ := packed(t, q)
	stream := append(binary.BigEndian.AppendUint16(nil, uint16(len(tcpQ))), tcpQ...)
	cut := 7
	path := writeCapture(t, []frame{
		{udp: true, src: "10.0.0.40", dst: "10.0.0.20", sport: 40000, dport: 53, payload: packed(t, q)},
		{udp: true, src: "10.0.0.20", dst: "10.0.0.40", sport: 53, dport: 40000, payload: packed(t, resp)},
		{udp: true, src: "10.0.0.40", dst: "10.0.0.20", sport: 40001, dport: 7000, payload: []byte("not dns")},
		// TCP query in two segments, the first one retransmitted.
		{src: "10.0.0.40", dst: "10.0.0.20", sport: 40002, dport: 53, seq: 1000, payload: stream[:cut]},
		{src: "10.0.0.40", dst: "10.0.0.20", sport: 40002, dport: 53, seq: 1000, payload: stream[:cut]},
		{src: "10.0.0.40", dst: "10.0.0.20", sport: 40002, dport: 53, seq: 1000 + uint32(cut), payload: stream[cut:]},
		// A tagged message: what a customization module put on the wire.
		{udp: true, src: "10.0.0.40", dst: "10.0.0.20", sport: 40003, dport: 53, payload: append(packed(t, q), "L45TAG"...)},
	})

	pkts, err := ReadPackets(path)
	require.NoError(t, err)
	require.Len(t, pkts, 7)
	require.Equal(t, "not dns", string(pkts[2].Payload))

	msgs, err := ReadFile(path)
	require.NoError(t, err)
	golden := "testdata/decode.golden"
	got := Summary(msgs)
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), got)
}
