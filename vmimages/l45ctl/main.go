// Command l45ctl runs in guests: it sends one request to Layer 4.5's
// netlink control socket and prints the reply's payload. The harness drives
// it through the agent and parses the reply on the host (harness/control).
//
//	l45ctl [-nobody] [-raw] REQUEST
//
// -raw sends REQUEST's bytes exactly (no trailing NUL), to test malformed
// input; -nobody drops to uid 65534 first, to test the CAP_NET_ADMIN check.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Protocol is Layer 4.5's netlink protocol number (contract R16).
const Protocol = 25

func main() {
	nobody := flag.Bool("nobody", false, "drop to uid/gid 65534 before opening the socket")
	raw := flag.Bool("raw", false, "send the request bytes as they are")
	timeout := flag.Duration("timeout", 10*time.Second, "how long to wait for the reply")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: l45ctl [-nobody] [-raw] REQUEST")
		os.Exit(2)
	}
	reply, err := request(flag.Arg(0), *raw, *nobody, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "l45ctl:", err)
		os.Exit(1)
	}
	os.Stdout.Write(reply)
	fmt.Println()
}

func request(req string, raw, nobody bool, timeout time.Duration) ([]byte, error) {
	if nobody {
		if err := unix.Setgid(65534); err != nil {
			return nil, fmt.Errorf("setgid: %w", err)
		}
		if err := unix.Setuid(65534); err != nil {
			return nil, fmt.Errorf("setuid: %w", err)
		}
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, Protocol)
	if err != nil {
		return nil, fmt.Errorf("netlink protocol %d: %w (is Layer 4.5 loaded?)", Protocol, err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	payload := []byte(req)
	if !raw {
		payload = append(payload, 0)
	}
	msg := make([]byte, unix.NLMSG_HDRLEN+len(payload))
	// struct nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32.
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.NLMSG_MIN_TYPE)
	ne.PutUint32(msg[8:], 1)
	ne.PutUint32(msg[12:], uint32(os.Getpid()))
	copy(msg[unix.NLMSG_HDRLEN:], payload)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	buf := make([]byte, 1<<20)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return nil, fmt.Errorf("no reply: %w", err)
	}
	if n < unix.NLMSG_HDRLEN {
		return nil, fmt.Errorf("short reply (%d bytes)", n)
	}
	end := int(binary.NativeEndian.Uint32(buf))
	if end > n || end < unix.NLMSG_HDRLEN {
		end = n
	}
	body := buf[unix.NLMSG_HDRLEN:end]
	for len(body) > 0 && body[len(body)-1] == 0 {
		body = body[:len(body)-1]
	}
	return body, nil
}
