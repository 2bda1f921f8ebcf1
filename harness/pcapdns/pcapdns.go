// Package pcapdns reads a link's capture and says what crossed the wire:
// every IPv4 UDP/TCP payload with its endpoints, and the DNS messages among
// them decoded with miekg/dns (TCP streams reassembled, length prefixes
// removed), so a test asserts on the bytes a peer really received.
package pcapdns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/miekg/dns"
)

// Packet is one transport payload seen on the wire.
type Packet struct {
	Time     time.Time
	Proto    string // "udp" or "tcp"
	Src, Dst netip.AddrPort
	Payload  []byte
	Seq      uint32 // TCP only
	SYN, FIN bool   // TCP only
}

// ReadPackets returns every IPv4 UDP and TCP packet of the capture in order
// (TCP packets without payload too, so handshakes can be checked).
func ReadPackets(path string) ([]Packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", path, err)
	}
	var out []Packet
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// A capture still being written may end mid-record.
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("capture %s: %w", path, err)
		}
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
		switch l := pkt.TransportLayer().(type) {
		case *layers.UDP:
			out = append(out, Packet{Time: ci.Timestamp, Proto: "udp",
				Src: netip.AddrPortFrom(src, uint16(l.SrcPort)), Dst: netip.AddrPortFrom(dst, uint16(l.DstPort)),
				Payload: append([]byte(nil), l.Payload...)})
		case *layers.TCP:
			out = append(out, Packet{Time: ci.Timestamp, Proto: "tcp",
				Src: netip.AddrPortFrom(src, uint16(l.SrcPort)), Dst: netip.AddrPortFrom(dst, uint16(l.DstPort)),
				Payload: append([]byte(nil), l.Payload...), Seq: l.Seq, SYN: l.SYN, FIN: l.FIN})
		}
	}
}

// Message is one DNS message seen on the wire.
type Message struct {
	Time     time.Time
	Proto    string
	Src, Dst netip.AddrPort
	Response bool
	Msg      *dns.Msg
	// Raw is the message's bytes; Err is set when they did not decode.
	Raw []byte
	Err error
}

// Question is the first question's name, or "".
func (m Message) Question() string {
	if m.Msg == nil || len(m.Msg.Question) == 0 {
		return ""
	}
	return m.Msg.Question[0].Name
}

// Answers are the answer records in presentation format.
func (m Message) Answers() []string {
	if m.Msg == nil {
		return nil
	}
	var out []string
	for _, rr := range m.Msg.Answer {
		out = append(out, rr.String())
	}
	return out
}

func decode(p Packet, raw []byte) Message {
	m := Message{Time: p.Time, Proto: p.Proto, Src: p.Src, Dst: p.Dst, Raw: raw}
	msg := new(dns.Msg)
	if err := msg.Unpack(raw); err != nil {
		m.Err = err
		return m
	}
	m.Msg, m.Response = msg, msg.Response
	return m
}

// DNSPort is the port whose traffic is decoded as DNS.
const DNSPort = 53

// Messages decodes the DNS messages among packets: UDP datagrams to or from
// port 53, and TCP streams to or from it reassembled in sequence order.
func Messages(packets []Packet) []Message {
	var out []Message
	type flow struct{ src, dst netip.AddrPort }
	streams := map[flow][]Packet{}
	var order []flow
	for _, p := range packets {
		if p.Src.Port() != DNSPort && p.Dst.Port() != DNSPort {
			continue
		}
		if p.Proto == "udp" {
			out = append(out, decode(p, p.Payload))
			continue
		}
		if len(p.Payload) == 0 {
			continue
		}
		k := flow{p.Src, p.Dst}
		if _, ok := streams[k]; !ok {
			order = append(order, k)
		}
		streams[k] = append(streams[k], p)
	}
	for _, k := range order {
		out = append(out, reassemble(streams[k])...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// reassemble orders a TCP stream's segments, drops retransmitted bytes and
// splits the stream at DNS's 2-byte length prefixes.
func reassemble(segs []Packet) []Message {
	sort.SliceStable(segs, func(i, j int) bool { return int32(segs[i].Seq-segs[j].Seq) < 0 })
	var stream []byte
	var first Packet
	next, started := uint32(0), false
	for _, s := range segs {
		if !started {
			next, started, first = s.Seq, true, s
		}
		off := int32(next - s.Seq)
		if off < 0 || int(off) >= len(s.Payload) {
			if off < 0 {
				break // a gap: the capture missed bytes
			}
			continue // all retransmitted
		}
		stream = append(stream, s.Payload[off:]...)
		next += uint32(len(s.Payload)) - uint32(off)
	}
	var out []Message
	for len(stream) >= 2 {
		n := int(binary.BigEndian.Uint16(stream))
		if len(stream) < 2+n {
			out = append(out, Message{Time: first.Time, Proto: "tcp", Src: first.Src, Dst: first.Dst,
				Raw: stream, Err: fmt.Errorf("TCP stream ends inside a %d-byte message", n)})
			break
		}
		out = append(out, decode(first, stream[2:2+n]))
		stream = stream[2+n:]
	}
	return out
}

// ReadFile reads a capture and returns its DNS messages.
func ReadFile(path string) ([]Message, error) {
	p, err := ReadPackets(path)
	if err != nil {
		return nil, err
	}
	return Messages(p), nil
}

// Filter returns the messages keep accepts.
func Filter(msgs []Message, keep func(Message) bool) []Message {
	var out []Message
	for _, m := range msgs {
		if keep(m) {
			out = append(out, m)
		}
	}
	return out
}

// Summary is one line per message, for failure messages and golden files.
func Summary(msgs []Message) string {
	var b strings.Builder
	for _, m := range msgs {
		kind := "query"
		if m.Response {
			kind = "response"
		}
		fmt.Fprintf(&b, "%s %s -> %s %s", m.Proto, m.Src, m.Dst, kind)
		if m.Err != nil {
			fmt.Fprintf(&b, " undecodable (%v) %q\n", m.Err, m.Raw)
			continue
		}
		fmt.Fprintf(&b, " id=%d %s", m.Msg.Id, m.Question())
		if len(m.Msg.Question) > 0 {
			fmt.Fprintf(&b, " %s", dns.TypeToString[m.Msg.Question[0].Qtype])
		}
		if m.Response {
			fmt.Fprintf(&b, " rcode=%s answers=[%s]", dns.RcodeToString[m.Msg.Rcode], strings.Join(m.Answers(), "; "))
		}
		b.WriteString("\n")
	}
	return b.String()
}
