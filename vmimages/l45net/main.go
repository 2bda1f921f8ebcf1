// Command l45net runs in guests and makes exactly the socket calls a test
// asks for, reporting each call's result as JSON (see harness/traffic,
// which builds its command lines and parses its output).
//
//	l45net udp|tcp -to HOST:PORT -msg M [-msg M...] [-recv] [flags]
//	l45net udp-serve|tcp-serve -listen HOST:PORT [-prefix P]
//	l45net tcp-accept -listen HOST:PORT [-timeout D]
//	l45net tcp-bulk|udp-rr -to HOST:PORT -duration D [-size N] [-timeout D]
//	l45net tcp-sink -listen HOST:PORT
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/traffic"
)

// The main goroutine keeps the main thread (the thread-group leader, whose
// name is the process's), so the I/O goroutine always gets a thread of its
// own whose name can differ.
func init() { runtime.LockOSThread() }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: l45net udp|tcp|udp-serve|tcp-serve|tcp-accept|tcp-bulk|udp-rr|tcp-sink [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	var err error
	switch mode {
	case "udp", "tcp":
		err = client(mode, fs, os.Args[2:])
	case "udp-serve", "tcp-serve":
		err = serve(strings.TrimSuffix(mode, "-serve"), fs, os.Args[2:])
	case "tcp-accept":
		err = acceptProbe(fs, os.Args[2:])
	case "tcp-bulk":
		err = bulk(fs, os.Args[2:])
	case "udp-rr":
		err = rr(fs, os.Args[2:])
	case "tcp-sink":
		err = sink(fs, os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "l45net:", err)
		os.Exit(1)
	}
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func sockaddr(s string) (*unix.SockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("address %q: want IPv4 host:port", s)
	}
	return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
}

func sockType(proto string) int {
	if proto == "tcp" {
		return unix.SOCK_STREAM
	}
	return unix.SOCK_DGRAM
}

func errnoName(err error) string {
	var e unix.Errno
	if errors.As(err, &e) {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
		return fmt.Sprintf("errno%d", int(e))
	}
	return err.Error()
}

// split cuts b into n nearly equal non-empty pieces (fewer if b is short).
func split(b []byte, n int) [][]byte {
	if n <= 1 || len(b) < 2 {
		return [][]byte{b}
	}
	n = min(n, len(b))
	var out [][]byte
	size := (len(b) + n - 1) / n
	for len(b) > 0 {
		k := min(size, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

func readComm(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

type clientFlags struct {
	to, from, thread, sync             string
	msgs                               multi
	segments, recvBuf, recvSegs, extra int
	recv, connect, nonblock, drain     bool
	timeout, pause, interval           time.Duration
}

func client(proto string, fs *flag.FlagSet, args []string) error {
	var f clientFlags
	fs.StringVar(&f.to, "to", "", "peer host:port")
	fs.StringVar(&f.from, "from", "", "local host:port to bind")
	fs.Var(&f.msgs, "msg", "message to send (repeatable)")
	fs.IntVar(&f.segments, "segments", 1, "iovecs per message (sendmsg when > 1)")
	fs.IntVar(&f.recvBuf, "recv-buf", 4096, "receive buffer size")
	fs.IntVar(&f.recvSegs, "recv-segs", 1, "iovecs for the receive buffer")
	fs.IntVar(&f.extra, "extra-recv", 0, "receives after the last message")
	fs.BoolVar(&f.recv, "recv", false, "receive after each send")
	fs.BoolVar(&f.connect, "connect", false, "connect a UDP socket")
	fs.BoolVar(&f.nonblock, "nonblock", false, "non-blocking socket")
	fs.BoolVar(&f.drain, "drain", false, "TCP: at the end shut down writing and read until the peer closes")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Second, "receive timeout (blocking) or poll wait (non-blocking)")
	fs.StringVar(&f.thread, "thread-name", "", "name of the thread making the calls")
	fs.DurationVar(&f.pause, "pause", 0, "pause before the first send")
	fs.DurationVar(&f.interval, "interval", 0, "pause between messages")
	fs.StringVar(&f.sync, "sync", "", "before message i>0, create DIR/ready-i and wait for DIR/go-i")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.to == "" {
		return errors.New("-to is required")
	}
	var rep traffic.Report
	var runErr error
	var wg sync.WaitGroup
	wg.Add(1)
	// The socket calls run on one locked OS thread so its name (comm) is
	// what the kernel sees for every call; the process keeps its own.
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		threadComm := fmt.Sprintf("/proc/self/task/%d/comm", unix.Gettid())
		if f.thread != "" {
			if err := os.WriteFile(threadComm, []byte(f.thread), 0); err != nil {
				runErr = fmt.Errorf("name thread: %w", err)
				return
			}
		}
		rep.Comm = readComm("/proc/self/comm")
		rep.ThreadComm = readComm(threadComm)
		runErr = run(proto, &f, &rep)
	}()
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	return json.NewEncoder(os.Stdout).Encode(&rep)
}

func run(proto string, f *clientFlags, rep *traffic.Report) error {
	to, err := sockaddr(f.to)
	if err != nil {
		return err
	}
	typ := sockType(proto)
	if f.nonblock {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(unix.AF_INET, typ, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(f.timeout.Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if f.from != "" {
		from, err := sockaddr(f.from)
		if err != nil {
			return err
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(fd, from); err != nil {
			return fmt.Errorf("bind %s: %w", f.from, err)
		}
	}
	connected := proto == "tcp" || f.connect
	if connected {
		err := unix.Connect(fd, to)
		if errors.Is(err, unix.EINPROGRESS) {
			err = waitFor(fd, unix.POLLOUT, f.timeout)
		}
		op := traffic.Op{Call: "connect"}
		if err != nil {
			op.Errno = errnoName(err)
			rep.Ops = append(rep.Ops, op)
			return nil
		}
		rep.Ops = append(rep.Ops, op)
	}
	if f.pause > 0 {
		time.Sleep(f.pause)
	}
	var dest unix.Sockaddr
	if !connected {
		dest = to
	}
	for i, m := range f.msgs {
		if i > 0 && f.interval > 0 {
			time.Sleep(f.interval)
		}
		if i > 0 && f.sync != "" {
			if err := handshake(f.sync, i); err != nil {
				return err
			}
		}
		rep.Ops = append(rep.Ops, send(fd, []byte(m), f.segments, dest))
		if f.recv {
			rep.Ops = append(rep.Ops, recv(fd, f))
		}
	}
	for i := 0; i < f.extra; i++ {
		rep.Ops = append(rep.Ops, recv(fd, f))
	}
	if f.drain {
		rep.Ops = append(rep.Ops, drain(fd, f))
	}
	return nil
}

// drain ends the sending side (everything queued is delivered, then FIN)
// and reads until the peer closes: one op with every byte read.
func drain(fd int, f *clientFlags) traffic.Op {
	op := traffic.Op{Call: "drain"}
	if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
		op.Errno = errnoName(err)
		return op
	}
	var all []byte
	buf := make([]byte, 65536)
	for {
		if f.nonblock {
			waitFor(fd, unix.POLLIN, f.timeout)
		}
		n, err := unix.Read(fd, buf)
		if err != nil {
			op.Errno = errnoName(err)
			break
		}
		if n == 0 {
			break
		}
		all = append(all, buf[:n]...)
	}
	op.N, op.Data = len(all), string(all)
	return op
}

// send uses sendto for one buffer and sendmsg for several, so both the
// single-buffer (ITER_UBUF on newer kernels) and the iovec paths are used.
func send(fd int, b []byte, segments int, to unix.Sockaddr) traffic.Op {
	if segments <= 1 {
		op := traffic.Op{Call: "send"}
		err := unix.Sendto(fd, b, unix.MSG_NOSIGNAL, to)
		if err != nil {
			op.Errno = errnoName(err)
		} else {
			op.N = len(b) // sendto in x/sys/unix hides the count; a short UDP send is an error
		}
		return op
	}
	op := traffic.Op{Call: "sendmsg"}
	n, err := unix.SendmsgBuffers(fd, split(b, segments), nil, to, unix.MSG_NOSIGNAL)
	if err != nil {
		op.Errno = errnoName(err)
	}
	op.N = n
	return op
}

func recv(fd int, f *clientFlags) traffic.Op {
	op := traffic.Op{Call: "recvmsg"}
	if f.nonblock {
		// Wait until the transport has data, then receive: if Layer 4.5
		// consumes it, the receive says EAGAIN.
		waitFor(fd, unix.POLLIN, f.timeout)
	}
	buf := make([]byte, f.recvBuf)
	n, _, flags, _, err := unix.RecvmsgBuffers(fd, split(buf, f.recvSegs), nil, 0)
	if err != nil {
		op.Errno = errnoName(err)
		return op
	}
	op.N = n
	op.Data = string(buf[:min(n, len(buf))])
	op.Trunc = flags&unix.MSG_TRUNC != 0
	return op
}

// syncWait bounds how long a -sync handshake waits for the test.
const syncWait = 10 * time.Minute

// handshake tells the test that the socket is about to send message i
// (DIR/ready-i) and waits until the test allows it (DIR/go-i), so a test can
// change Layer 4.5's state between two messages of one live socket.
func handshake(dir string, i int) error {
	ready := fmt.Sprintf("%s/ready-%d", dir, i)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		return err
	}
	goFile := fmt.Sprintf("%s/go-%d", dir, i)
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(goFile); err == nil {
			return nil
		}
		if time.Since(start) > syncWait {
			return fmt.Errorf("sync: %s never appeared", goFile)
		}
	}
}

func waitFor(fd int, events int16, d time.Duration) error {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(pfd, int(d.Milliseconds()))
	if err != nil {
		return err
	}
	if n == 0 {
		return unix.ETIMEDOUT
	}
	if events == unix.POLLOUT {
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && v != 0 {
			return unix.Errno(v)
		}
	}
	return nil
}
