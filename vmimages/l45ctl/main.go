// Command l45ctl runs in guests: it sends one request to Layer 4.5's
// netlink control socket and prints the reply's payload. The harness drives
// it through the agent and parses the reply on the host (harness/control).
//
//	l45ctl [-nobody] [-raw] [-netlink SPEC] REQUEST
//
// -raw sends REQUEST's bytes exactly (no trailing NUL), to test malformed
// input; -nobody drops to uid 65534 first, to test the CAP_NET_ADMIN check.
// -netlink names the core's control interface (guest.ParseNetlink: a
// protocol number, or genl:FAMILY); without it l45ctl reads the spec the
// host left in guest.NetlinkFile, else uses the contract's protocol 25.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/guest"
)

func main() {
	nobody := flag.Bool("nobody", false, "drop to uid/gid 65534 before opening the socket")
	raw := flag.Bool("raw", false, "send the request bytes as they are")
	timeout := flag.Duration("timeout", 10*time.Second, "how long to wait for the reply")
	spec := flag.String("netlink", "", "the core's netlink protocol number or genl:FAMILY (default: "+guest.NetlinkFile+", else "+guest.DefaultNetlink.String()+")")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: l45ctl [-nobody] [-raw] [-netlink SPEC] REQUEST")
		os.Exit(2)
	}
	nl, err := endpoint(*spec, guest.NetlinkFile)
	if err == nil {
		var reply []byte
		reply, err = request(nl, flag.Arg(0), *raw, *nobody, *timeout)
		if err == nil {
			os.Stdout.Write(reply)
			fmt.Println()
			return
		}
	}
	fmt.Fprintln(os.Stderr, "l45ctl:", err)
	os.Exit(1)
}

// endpoint is the control interface to use: spec when given, else the one
// in file, else the contract's.
func endpoint(spec, file string) (guest.Netlink, error) {
	if spec != "" {
		return guest.ParseNetlink(spec)
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return guest.DefaultNetlink, nil
	}
	if err != nil {
		return guest.Netlink{}, err
	}
	nl, err := guest.ParseNetlink(strings.TrimSpace(string(b)))
	if err != nil {
		return guest.Netlink{}, fmt.Errorf("%s: %w", file, err)
	}
	return nl, nil
}

func request(nl guest.Netlink, req string, raw, nobody bool, timeout time.Duration) ([]byte, error) {
	if nobody {
		if err := unix.Setgid(65534); err != nil {
			return nil, fmt.Errorf("setgid: %w", err)
		}
		if err := unix.Setuid(65534); err != nil {
			return nil, fmt.Errorf("setuid: %w", err)
		}
	}
	proto := nl.Protocol
	if nl.Family != "" {
		proto = unix.NETLINK_GENERIC
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, proto)
	if err != nil {
		return nil, fmt.Errorf("netlink protocol %d: %w (is Layer 4.5 loaded?)", proto, err)
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
	pid := uint32(os.Getpid())
	if nl.Family == "" {
		// The contract's framing: no flags, the request as the payload.
		reply, err := exchange(fd, message(unix.NLMSG_MIN_TYPE, 0, 1, pid, payload))
		if err != nil {
			return nil, err
		}
		return trimNUL(reply[unix.NLMSG_HDRLEN:]), nil
	}
	// Generic netlink: the family's id first, from the controller.
	reply, err := exchange(fd, familyRequest(nl.Family, 1, pid))
	if err != nil {
		return nil, err
	}
	id, err := familyID(reply)
	if err != nil {
		return nil, fmt.Errorf("generic netlink family %s: %w (is Layer 4.5 loaded?)", nl.Family, err)
	}
	reply, err = exchange(fd, genlMessage(id, 2, pid, guest.GenlCommand, attr(guest.GenlAttr, payload)))
	if err != nil {
		return nil, err
	}
	body, err := genlAttr(reply, guest.GenlAttr)
	if err != nil {
		return nil, fmt.Errorf("generic netlink family %s: %w", nl.Family, err)
	}
	return trimNUL(body), nil
}

// exchange sends one message to the kernel and returns the reply, cut to
// the length its header gives.
func exchange(fd int, msg []byte) ([]byte, error) {
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
	return buf[:end], nil
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}
