package link

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
)

func sendFrame(t *testing.T, c net.Conn, frame []byte) {
	t.Helper()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(frame)))
	_, err := c.Write(append(hdr[:], frame...))
	require.NoError(t, err)
}

func readFrame(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [4]byte
	_, err := io.ReadFull(c, hdr[:])
	require.NoError(t, err)
	b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	return b
}

func TestHubRepeatsFramesToOtherPortsAndCapturesThem(t *testing.T) {
	dir := t.TempDir()
	h, err := Listen(filepath.Join(dir, "seg.sock"), filepath.Join(dir, "seg.pcap"))
	require.NoError(t, err)
	var ports []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("unix", h.Path())
		require.NoError(t, err)
		defer c.Close()
		ports = append(ports, c)
	}
	require.Eventually(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.ports) == 3 }, 5*time.Second, 10*time.Millisecond)

	frame := make([]byte, 60)
	copy(frame, "\xff\xff\xff\xff\xff\xff\x52\x54\x00\x00\x00\x01\x08\x06hello")
	sendFrame(t, ports[0], frame)
	require.Equal(t, frame, readFrame(t, ports[1]))
	require.Equal(t, frame, readFrame(t, ports[2]))
	require.NoError(t, h.Close())
	require.Equal(t, 1, h.Frames())

	f, err := os.Open(filepath.Join(dir, "seg.pcap"))
	require.NoError(t, err)
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	require.NoError(t, err)
	data, _, err := r.ReadPacketData()
	require.NoError(t, err)
	require.Equal(t, frame, data)
	_, _, err = r.ReadPacketData()
	require.ErrorIs(t, err, io.EOF)
}

func TestHubDropsPortSendingAnOversizedFrame(t *testing.T) {
	dir := t.TempDir()
	h, err := Listen(filepath.Join(dir, "seg.sock"), "")
	require.NoError(t, err)
	defer h.Close()
	c, err := net.Dial("unix", h.Path())
	require.NoError(t, err)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], maxFrame+1)
	_, err = c.Write(hdr[:])
	require.NoError(t, err)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the hub must hang up on a corrupt stream")
}
