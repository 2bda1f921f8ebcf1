package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/traffic"
)

var (
	outMu sync.Mutex
	out   = json.NewEncoder(os.Stdout)
)

func logLine(l traffic.ServerLine) {
	outMu.Lock()
	defer outMu.Unlock()
	out.Encode(&l)
}

func peer(sa unix.Sockaddr) string {
	if in, ok := sa.(*unix.SockaddrInet4); ok {
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), uint16(in.Port)).String()
	}
	return ""
}

// socketAt makes a socket of type typ and binds or connects it (call, named
// op in errors) to hostport.
func socketAt(typ int, hostport, op string, call func(int, unix.Sockaddr) error) (int, error) {
	addr, err := sockaddr(hostport)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_INET, typ, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	// A server started again at once binds its port again.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := call(fd, addr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s %s: %w", op, hostport, err)
	}
	return fd, nil
}

// serve echoes every message back with a prefix until killed.
func serve(proto string, fs *flag.FlagSet, args []string) error {
	listen := fs.String("listen", "", "local host:port")
	prefix := fs.String("prefix", "", "prepended to every echoed message")
	quiet := fs.Bool("quiet", false, "log errors only, not every message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fd, err := socketAt(sockType(proto), *listen, "bind", unix.Bind)
	if err != nil {
		return err
	}
	if proto == "udp" {
		buf := make([]byte, 65536)
		for {
			n, _, _, from, err := unix.Recvmsg(fd, buf, nil, 0)
			if err != nil {
				logLine(traffic.ServerLine{Err: errnoName(err)})
				continue
			}
			if !*quiet {
				logLine(traffic.ServerLine{From: peer(from), Data: string(buf[:n])})
			}
			if err := unix.Sendto(fd, append([]byte(*prefix), buf[:n]...), 0, from); err != nil {
				logLine(traffic.ServerLine{From: peer(from), Err: errnoName(err)})
			}
		}
	}
	return acceptLoop(fd, func(c int, from string) { echo(c, from, *prefix, *quiet) })
}

// acceptLoop listens on fd and hands every connection to serve on a
// goroutine of its own, until killed.
func acceptLoop(fd int, serve func(fd int, from string)) error {
	if err := unix.Listen(fd, 16); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	for {
		c, from, err := unix.Accept(fd)
		if err != nil {
			logLine(traffic.ServerLine{Err: errnoName(err)})
			continue
		}
		go serve(c, peer(from))
	}
}

func echo(fd int, from, prefix string, quiet bool) {
	defer unix.Close(fd)
	buf := make([]byte, 65536)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			logLine(traffic.ServerLine{From: from, Err: errnoName(err)})
			return
		}
		if n == 0 {
			return
		}
		if !quiet {
			logLine(traffic.ServerLine{From: from, Data: string(buf[:n])})
		}
		if _, err := unix.Write(fd, append([]byte(prefix), buf[:n]...)); err != nil {
			logLine(traffic.ServerLine{From: from, Err: errnoName(err)})
			return
		}
	}
}

// acceptProbe listens on a non-blocking TCP socket and accepts at once,
// with nothing pending (the call must fail with EAGAIN, not crash the
// kernel), then waits for one connection, accepts it and receives one
// message. It prints a client report: listen, accept, accept, recvmsg.
func acceptProbe(fs *flag.FlagSet, args []string) error {
	listen := fs.String("listen", "", "local host:port")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the connection and its message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fd, err := socketAt(unix.SOCK_STREAM|unix.SOCK_NONBLOCK, *listen, "bind", unix.Bind)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var rep traffic.Report
	rep.Comm = readComm("/proc/self/comm")
	rep.ThreadComm = rep.Comm
	op := traffic.Op{Call: "listen"}
	if err := unix.Listen(fd, 16); err != nil {
		op.Errno = errnoName(err)
	}
	rep.Ops = append(rep.Ops, op)
	accept := func() (int, traffic.Op) {
		op := traffic.Op{Call: "accept"}
		c, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if err != nil {
			op.Errno = errnoName(err)
			return -1, op
		}
		return c, op
	}
	// Nothing can be pending yet: the caller connects only after it saw
	// this socket listening, and that is after this accept.
	c, op := accept()
	if c >= 0 {
		unix.Close(c)
	}
	rep.Ops = append(rep.Ops, op)
	if err := waitFor(fd, unix.POLLIN, *timeout); err != nil {
		rep.Ops = append(rep.Ops, traffic.Op{Call: "accept", Errno: errnoName(err)})
		return json.NewEncoder(os.Stdout).Encode(&rep)
	}
	c, op = accept()
	rep.Ops = append(rep.Ops, op)
	if c >= 0 {
		defer unix.Close(c)
		tv := unix.NsecToTimeval(timeout.Nanoseconds())
		unix.SetsockoptTimeval(c, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		unix.SetNonblock(c, false)
		rop := traffic.Op{Call: "recvmsg"}
		buf := make([]byte, 4096)
		n, err := unix.Read(c, buf)
		if err != nil {
			rop.Errno = errnoName(err)
		} else {
			rop.N, rop.Data = n, string(buf[:n])
		}
		rep.Ops = append(rep.Ops, rop)
	}
	return json.NewEncoder(os.Stdout).Encode(&rep)
}
