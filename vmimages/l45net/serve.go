package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"layer45/harness/traffic"
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

// serve echoes every message back with a prefix until killed.
func serve(proto string, fs *flag.FlagSet, args []string) error {
	listen := fs.String("listen", "", "local host:port")
	prefix := fs.String("prefix", "", "prepended to every echoed message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr, err := sockaddr(*listen)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, sockType(proto), 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, addr); err != nil {
		return fmt.Errorf("bind %s: %w", *listen, err)
	}
	if proto == "udp" {
		buf := make([]byte, 65536)
		for {
			n, _, _, from, err := unix.Recvmsg(fd, buf, nil, 0)
			if err != nil {
				logLine(traffic.ServerLine{Err: errnoName(err)})
				continue
			}
			logLine(traffic.ServerLine{From: peer(from), Data: string(buf[:n])})
			if err := unix.Sendto(fd, append([]byte(*prefix), buf[:n]...), 0, from); err != nil {
				logLine(traffic.ServerLine{From: peer(from), Err: errnoName(err)})
			}
		}
	}
	if err := unix.Listen(fd, 16); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	for {
		c, from, err := unix.Accept(fd)
		if err != nil {
			logLine(traffic.ServerLine{Err: errnoName(err)})
			continue
		}
		go echo(c, peer(from), *prefix)
	}
}

func echo(fd int, from, prefix string) {
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
		logLine(traffic.ServerLine{From: from, Data: string(buf[:n])})
		if _, err := unix.Write(fd, append([]byte(prefix), buf[:n]...)); err != nil {
			logLine(traffic.ServerLine{From: from, Err: errnoName(err)})
			return
		}
	}
}
