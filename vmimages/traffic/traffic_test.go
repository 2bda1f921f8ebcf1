package traffic

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"layer45/vmimages/guest"

	"github.com/stretchr/testify/require"
)

// buildTool compiles l45net for the host: its system calls are tested here
// on loopback, so guest tests only prove what Layer 4.5 changes.
func buildTool(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "l45net")
	out, err := exec.Command("go", "build", "-o", bin, "layer45/vmimages/l45net").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serverLog is a server's standard output, read by the test while the
// server may still be writing it.
type serverLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *serverLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *serverLog) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// startServer runs an l45net server (Server, Sink) until t ends.
func startServer(t *testing.T, bin string, s interface{ Args() []string }) *serverLog {
	t.Helper()
	out := &serverLog{}
	cmd := exec.Command(bin, s.Args()[1:]...)
	cmd.Stdout = out
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(200 * time.Millisecond)
	return out
}

// runTool runs an l45net client to its end and returns its output.
func runTool(t *testing.T, bin string, args []string) []byte {
	t.Helper()
	out, err := exec.Command(bin, args[1:]...).Output()
	require.NoError(t, err)
	return out
}

func runClient(t *testing.T, bin string, c Client) *Report {
	t.Helper()
	r, err := ParseReport(runTool(t, bin, c.Args()))
	require.NoError(t, err)
	return r
}

func TestToolOnLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program; skipped with -short")
	}
	bin := buildTool(t)

	t.Run("udp echo with segments and a named thread", func(t *testing.T) {
		port := freePort(t, "udp")
		log := startServer(t, bin, Server{Proto: "udp", Listen: fmt.Sprintf("127.0.0.1:%d", port), Prefix: "re:"})
		r := runClient(t, bin, Client{Proto: "udp", To: fmt.Sprintf("127.0.0.1:%d", port),
			Messages: []string{"hello", "world!"}, Segments: 3, Recv: true, ThreadName: "worker"})
		require.Equal(t, []string{"re:hello", "re:world!"}, r.Received())
		require.Len(t, r.Calls("sendmsg"), 2)
		require.Equal(t, 5, r.Calls("sendmsg")[0].N)
		require.Equal(t, "worker", r.ThreadComm)
		require.Equal(t, "l45net", r.Comm)
		lines, err := ParseServerLog(log.Bytes())
		require.NoError(t, err)
		require.Len(t, lines, 2)
		require.Equal(t, "hello", lines[0].Data)
	})

	t.Run("udp truncation is reported", func(t *testing.T) {
		port := freePort(t, "udp")
		startServer(t, bin, Server{Proto: "udp", Listen: fmt.Sprintf("127.0.0.1:%d", port)})
		r := runClient(t, bin, Client{Proto: "udp", To: fmt.Sprintf("127.0.0.1:%d", port), Connect: true,
			Messages: []string{"0123456789"}, Recv: true, RecvBuf: 4})
		rc := r.Calls("recvmsg")
		require.Len(t, rc, 1)
		require.Equal(t, "0123", rc[0].Data)
		require.True(t, rc[0].Trunc)
	})

	t.Run("tcp echo and leftovers", func(t *testing.T) {
		port := freePort(t, "tcp")
		startServer(t, bin, Server{Proto: "tcp", Listen: fmt.Sprintf("127.0.0.1:%d", port), Prefix: ">"})
		r := runClient(t, bin, Client{Proto: "tcp", To: fmt.Sprintf("127.0.0.1:%d", port),
			Messages: []string{"abcdef"}, Recv: true, RecvBuf: 4, ExtraRecv: 1})
		require.Equal(t, "connect", r.Ops[0].Call)
		require.Equal(t, ">abcdef", strings.Join(r.Received(), ""))
	})

	t.Run("non-blocking receive with nothing to read says EAGAIN", func(t *testing.T) {
		port := freePort(t, "udp")
		// No server: the datagram goes nowhere.
		r := runClient(t, bin, Client{Proto: "udp", To: fmt.Sprintf("127.0.0.1:%d", port), From: "127.0.0.1:0",
			Messages: []string{"x"}, Recv: true, NonBlock: true, Timeout: 100 * time.Millisecond})
		require.Equal(t, "EAGAIN", r.Calls("recvmsg")[0].Errno)
	})

	t.Run("bulk into a sink: the sink reads every byte written, in about the duration", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
		log := startServer(t, bin, Sink{Listen: addr})
		r := runRate(t, bin, Bulk{To: addr, Duration: 300 * time.Millisecond, Size: 1000}.Args())
		require.Positive(t, r.Ops)
		require.Equal(t, 1000*r.Ops, r.Bytes, "whole writes on a blocking socket")
		require.GreaterOrEqual(t, r.Seconds, 0.3)
		require.Less(t, r.Seconds, 5.0)
		require.Eventually(t, func() bool { return len(log.Bytes()) > 0 }, 5*time.Second, 10*time.Millisecond)
		lines, err := ParseServerLog(log.Bytes())
		require.NoError(t, err)
		require.Equal(t, []ServerLine{{From: lines[0].From, Bytes: r.Bytes}}, lines)
	})

	t.Run("request/response against a quiet echo server", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp"))
		log := startServer(t, bin, Server{Proto: "udp", Listen: addr, Quiet: true})
		r := runRate(t, bin, RR{To: addr, Duration: 200 * time.Millisecond, Size: 32}.Args())
		require.Positive(t, r.Ops)
		require.Zero(t, r.Lost)
		require.Equal(t, 32*r.Ops, r.Bytes)
		require.Empty(t, log.Bytes(), "a quiet server logs no messages")
	})

	t.Run("request/response: an echo that differs from its request fails", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp"))
		startServer(t, bin, Server{Proto: "udp", Listen: addr, Prefix: "P:", Quiet: true})
		out, err := exec.Command(bin, RR{To: addr, Duration: time.Millisecond}.Args()[1:]...).CombinedOutput()
		require.Error(t, err)
		require.Contains(t, string(out), "is not request 1")
	})

	t.Run("request/response: a request nobody answers is lost, not fatal", func(t *testing.T) {
		// A bound socket that never answers (no ICMP port unreachable).
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		defer c.Close()
		r := runRate(t, bin, RR{To: c.LocalAddr().String(), Duration: time.Millisecond, Timeout: 100 * time.Millisecond}.Args())
		require.Zero(t, r.Ops)
		require.Equal(t, int64(1), r.Lost)
	})
}

func TestToolSyncIntervalAndAcceptProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program; skipped with -short")
	}
	bin := buildTool(t)

	t.Run("sync waits for the go file between messages", func(t *testing.T) {
		port := freePort(t, "udp")
		startServer(t, bin, Server{Proto: "udp", Listen: fmt.Sprintf("127.0.0.1:%d", port)})
		dir := filepath.Join(t.TempDir(), "sync")
		c := Client{Proto: "udp", To: fmt.Sprintf("127.0.0.1:%d", port), Connect: true,
			Messages: []string{"one", "two"}, Recv: true, SyncDir: dir, Interval: 10 * time.Millisecond}
		cmd := exec.Command(bin, c.Args()[1:]...)
		var out bytes.Buffer
		cmd.Stdout = &out
		require.NoError(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		require.Eventually(t, func() bool { _, err := os.Stat(ReadyFile(dir, 1)); return err == nil },
			10*time.Second, 10*time.Millisecond, "ready-1 never appeared")
		select {
		case err := <-done:
			t.Fatalf("the client went on without go-1: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		require.NoError(t, os.WriteFile(GoFile(dir, 1), nil, 0o644))
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Fatal("the client did not finish after go-1")
		}
		r, err := ParseReport(out.Bytes())
		require.NoError(t, err)
		require.Equal(t, []string{"one", "two"}, r.Received())
	})

	t.Run("drain reads the whole echo after shutting down writing", func(t *testing.T) {
		port := freePort(t, "tcp")
		startServer(t, bin, Server{Proto: "tcp", Listen: fmt.Sprintf("127.0.0.1:%d", port), Prefix: ">"})
		big := strings.Repeat("0123456789", 10000)
		r := runClient(t, bin, Client{Proto: "tcp", To: fmt.Sprintf("127.0.0.1:%d", port), Messages: []string{big}, Drain: true})
		d := r.Calls("drain")
		require.Len(t, d, 1)
		require.Empty(t, d[0].Errno)
		// The server prefixes each chunk it read.
		require.True(t, strings.HasPrefix(d[0].Data, ">0123"))
		require.True(t, strings.ReplaceAll(d[0].Data, ">", "") == big, "drained %d bytes", d[0].N)
	})

	t.Run("accept probe: EAGAIN first, then a real connection", func(t *testing.T) {
		port := freePort(t, "tcp")
		p := AcceptProbe{Listen: fmt.Sprintf("127.0.0.1:%d", port), Timeout: 10 * time.Second}
		require.Equal(t, []string{guest.L45net, "tcp-accept", "-listen", p.Listen, "-timeout", "10s"}, p.Args())
		cmd := exec.Command(bin, p.Args()[1:]...)
		var out bytes.Buffer
		cmd.Stdout = &out
		require.NoError(t, cmd.Start())
		var conn net.Conn
		require.Eventually(t, func() bool {
			var err error
			conn, err = net.Dial("tcp4", p.Listen)
			return err == nil
		}, 10*time.Second, 20*time.Millisecond)
		_, err := conn.Write([]byte("hi"))
		require.NoError(t, err)
		require.NoError(t, cmd.Wait())
		conn.Close()
		r, err := ParseReport(out.Bytes())
		require.NoError(t, err)
		require.Len(t, r.Ops, 4, "%+v", r.Ops)
		require.Equal(t, "listen", r.Ops[0].Call)
		require.Empty(t, r.Ops[0].Errno)
		require.Equal(t, "accept", r.Ops[1].Call)
		require.Equal(t, "EAGAIN", r.Ops[1].Errno)
		require.Equal(t, "accept", r.Ops[2].Call)
		require.Empty(t, r.Ops[2].Errno)
		require.Equal(t, "hi", r.Ops[3].Data)
	})
}
