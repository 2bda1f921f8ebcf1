package main

// The timed modes of the overhead benchmark (traffic.Bulk, traffic.RR,
// traffic.Sink): they print a traffic.Rate measured here, inside the
// guest.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/traffic"
)

// retryEINTR repeats a system call that a signal interrupted: the Go
// runtime preempts with signals, and a socket call with a timeout set
// returns EINTR instead of restarting (signal(7)).
func retryEINTR(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// timed is what a timed mode's common flags set up.
type timed struct {
	fd       int // connected to -to
	duration time.Duration
	size     int
}

// startTimed parses a timed mode's flags (fs may hold more of its own)
// and connects a socket of type typ to -to.
func startTimed(fs *flag.FlagSet, args []string, typ, size, minSize int) (*timed, error) {
	to := fs.String("to", "", "peer host:port")
	duration := fs.Duration("duration", 2*time.Second, "how long to send")
	sz := fs.Int("size", size, "bytes per message")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *sz < minSize {
		return nil, fmt.Errorf("-size must be at least %d", minSize)
	}
	fd, err := socketAt(typ, *to, "connect", unix.Connect)
	if err != nil {
		return nil, err
	}
	return &timed{fd: fd, duration: *duration, size: *sz}, nil
}

// bulk writes zeros (a tag appended by Layer 4.5 is never mistaken for
// data) to a tcp-sink for the duration, then shuts down writing and waits
// for the sink to close: the transfer ends when the receiving application
// has read every byte.
func bulk(fs *flag.FlagSet, args []string) error {
	t, err := startTimed(fs, args, unix.SOCK_STREAM, 16<<10, 1)
	if err != nil {
		return err
	}
	fd := t.fd
	defer unix.Close(fd)
	buf := make([]byte, t.size)
	var r traffic.Rate
	start := time.Now()
	for r.Ops == 0 || time.Since(start) < t.duration {
		n, err := retryEINTR(func() (int, error) { return unix.Write(fd, buf) })
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		r.Ops++
		r.Bytes += int64(n)
	}
	if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	for {
		n, err := retryEINTR(func() (int, error) { return unix.Read(fd, buf) })
		if err != nil {
			return fmt.Errorf("wait for the sink to close: %w", err)
		}
		if n == 0 {
			break
		}
	}
	r.Seconds = time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(&r)
}

// rr sends one request at a time to an echo server (no prefix) and waits
// for its echo, for the duration. A request carries its sequence number
// in its first 8 bytes, so a late echo of an earlier one is told apart.
func rr(fs *flag.FlagSet, args []string) error {
	timeout := fs.Duration("timeout", time.Second, "wait for one echo, then count the request lost")
	t, err := startTimed(fs, args, unix.SOCK_DGRAM, 64, 8)
	if err != nil {
		return err
	}
	fd := t.fd
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	req := bytes.Repeat([]byte("q"), t.size)
	buf := make([]byte, 65536)
	var r traffic.Rate
	start := time.Now()
	for seq := uint64(1); r.Ops+r.Lost == 0 || time.Since(start) < t.duration; seq++ {
		binary.BigEndian.PutUint64(req, seq)
		if _, err := retryEINTR(func() (int, error) { return unix.Write(fd, req) }); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		answered, err := awaitEcho(fd, req, buf)
		if err != nil {
			return err
		}
		if answered {
			r.Ops++
			r.Bytes += int64(len(req))
		} else {
			r.Lost++
		}
	}
	r.Seconds = time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(&r)
}

// awaitEcho receives until req's echo arrives (true) or the receive times
// out (false). Late echoes of earlier requests are skipped; anything else
// is an error: the path between the applications changed the data.
func awaitEcho(fd int, req, buf []byte) (bool, error) {
	seq := binary.BigEndian.Uint64(req)
	for {
		n, err := retryEINTR(func() (int, error) { return unix.Read(fd, buf) })
		if errors.Is(err, unix.EAGAIN) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("receive: %w", err)
		}
		got := buf[:n]
		if bytes.Equal(got, req) {
			return true, nil
		}
		if n == len(req) && bytes.Equal(got[8:], req[8:]) && binary.BigEndian.Uint64(got) < seq {
			continue
		}
		return false, fmt.Errorf("echo %q is not request %d (%q)", got, seq, req)
	}
}

// sink reads every connection to its end, logs the bytes it read and
// closes it, until killed.
func sink(fs *flag.FlagSet, args []string) error {
	listen := fs.String("listen", "", "local host:port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fd, err := socketAt(unix.SOCK_STREAM, *listen, "bind", unix.Bind)
	if err != nil {
		return err
	}
	return acceptLoop(fd, drainConn)
}

func drainConn(fd int, from string) {
	defer unix.Close(fd)
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, err := retryEINTR(func() (int, error) { return unix.Read(fd, buf) })
		if err != nil {
			logLine(traffic.ServerLine{From: from, Err: errnoName(err), Bytes: total})
			return
		}
		if n == 0 {
			break
		}
		total += int64(n)
	}
	logLine(traffic.ServerLine{From: from, Bytes: total})
}
