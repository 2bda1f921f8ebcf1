// Package link is an Ethernet segment for guests: a hub on the host that
// QEMU's stream netdevs connect to over one unix socket. Every frame is
// repeated to every other port and written to a pcap, so a test sees exactly
// what crossed the wire, for any number of guests.
package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// maxFrame bounds a frame read from QEMU; larger means a broken stream.
const maxFrame = 65536 + 14

// Hub is a running segment.
type Hub struct {
	ln     *net.UnixListener
	path   string
	mu     sync.Mutex
	ports  []net.Conn
	pcap   *pcapgo.Writer
	pcapF  *os.File
	frames int
	wg     sync.WaitGroup
	closed bool
}

// Listen starts a hub on the unix socket path, writing a pcap to pcapPath
// (none if empty).
func Listen(path, pcapPath string) (*Hub, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("link: listen %s: %w", path, err)
	}
	h := &Hub{ln: ln, path: path}
	if pcapPath != "" {
		f, err := os.Create(pcapPath)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("link: %w", err)
		}
		w := pcapgo.NewWriter(f)
		if err := w.WriteFileHeader(maxFrame, layers.LinkTypeEthernet); err != nil {
			f.Close()
			ln.Close()
			return nil, fmt.Errorf("link: pcap header: %w", err)
		}
		h.pcap, h.pcapF = w, f
	}
	h.wg.Add(1)
	go h.accept()
	return h, nil
}

// Path is the socket guests connect to.
func (h *Hub) Path() string { return h.path }

// Frames counts frames seen so far.
func (h *Hub) Frames() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.frames
}

func (h *Hub) accept() {
	defer h.wg.Done()
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			c.Close()
			return
		}
		h.ports = append(h.ports, c)
		h.mu.Unlock()
		h.wg.Add(1)
		go h.serve(c)
	}
}

func (h *Hub) serve(c net.Conn) {
	defer h.wg.Done()
	defer h.drop(c)
	var hdr [4]byte
	buf := make([]byte, maxFrame)
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame {
			return
		}
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		h.forward(c, hdr[:], buf[:n])
	}
}

func (h *Hub) forward(from net.Conn, hdr, frame []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.frames++
	if h.pcap != nil {
		// A pcap write error must not stop the segment; it shows as a
		// short capture, which the decoding side reports.
		h.pcap.WritePacket(gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(frame), Length: len(frame)}, frame)
	}
	for _, p := range h.ports {
		if p == from {
			continue
		}
		// A slow or dead port must not stall the segment.
		p.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := p.Write(append(append([]byte{}, hdr...), frame...)); err != nil {
			continue
		}
	}
}

func (h *Hub) drop(c net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, p := range h.ports {
		if p == c {
			h.ports = append(h.ports[:i], h.ports[i+1:]...)
			break
		}
	}
	c.Close()
}

// Close stops the hub and flushes the pcap.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closed = true
	ports := append([]net.Conn(nil), h.ports...)
	h.mu.Unlock()
	err := h.ln.Close()
	for _, p := range ports {
		p.Close()
	}
	h.wg.Wait()
	os.Remove(h.path)
	if h.pcapF != nil {
		err = errors.Join(err, h.pcapF.Close())
	}
	return err
}
