// Package traffic drives l45net, the harness's socket tool in guests, and
// decodes what it reports. l45net makes exactly the system calls a test asks
// for (send or sendmsg with several segments, recvmsg with a given buffer,
// blocking or not, connected or not, from a thread with its own name) and
// reports bytes, flags and errno names, so a test asserts on what the
// application really saw.
package traffic

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"layer45/vmimages/guest"
)

// Client describes one client run: messages sent to a peer, each followed
// by a receive when Recv is set.
type Client struct {
	Proto       string        // "udp" or "tcp"
	To          string        // host:port
	From        string        // optional local host:port to bind
	Messages    []string      // sent in order
	Segments    int           // split each message into this many iovecs (sendmsg); 0/1 = one buffer (send)
	Recv        bool          // receive after each send
	RecvBuf     int           // receive buffer size (default 4096)
	RecvSegs    int           // split the receive buffer into this many iovecs
	ExtraRecv   int           // further receives after the last message (TCP leftovers)
	Connect     bool          // UDP: connect() first (TCP always connects)
	NonBlock    bool          // non-blocking socket
	Timeout     time.Duration // SO_RCVTIMEO for blocking receives (default 2s)
	ThreadName  string        // run the socket calls on a thread with this comm
	CloseEarly  bool          // close the socket without reading replies
	PauseBefore time.Duration // sleep between socket creation/connect and the first send
	Interval    time.Duration // sleep between two messages
	Drain       bool          // TCP: at the end shut down writing and read until the peer closes (op "drain")
	// SyncDir makes the client wait before every message but the first:
	// it creates SyncDir/ready-<i> and sends message i only once
	// SyncDir/go-<i> exists, so a test can act between two messages of
	// one live socket (see ReadyFile and GoFile).
	SyncDir string
}

// ReadyFile is the file a client with SyncDir creates when it is about to
// send message i (counted from 0).
func ReadyFile(dir string, i int) string { return fmt.Sprintf("%s/ready-%d", dir, i) }

// GoFile is the file that lets a client with SyncDir send message i.
func GoFile(dir string, i int) string { return fmt.Sprintf("%s/go-%d", dir, i) }

// Args is the l45net command line for c.
func (c Client) Args() []string {
	a := []string{guest.L45net, c.Proto, "-to", c.To}
	if c.From != "" {
		a = append(a, "-from", c.From)
	}
	for _, m := range c.Messages {
		a = append(a, "-msg", m)
	}
	num := func(flag string, v int) {
		if v != 0 {
			a = append(a, flag, strconv.Itoa(v))
		}
	}
	num("-segments", c.Segments)
	num("-recv-buf", c.RecvBuf)
	num("-recv-segs", c.RecvSegs)
	num("-extra-recv", c.ExtraRecv)
	for _, f := range []struct {
		flag string
		on   bool
	}{{"-recv", c.Recv}, {"-connect", c.Connect}, {"-nonblock", c.NonBlock}} {
		if f.on {
			a = append(a, f.flag)
		}
	}
	for _, f := range [][2]string{{"-timeout", durationFlag(c.Timeout)}, {"-thread-name", c.ThreadName},
		{"-pause", durationFlag(c.PauseBefore)}, {"-interval", durationFlag(c.Interval)}, {"-sync", c.SyncDir}} {
		if f[1] != "" {
			a = append(a, f[0], f[1])
		}
	}
	if c.Drain {
		a = append(a, "-drain")
	}
	return a
}

// Server describes an echo server: every message received is sent back
// (UDP to its sender, TCP on its connection), prefixed with Prefix.
type Server struct {
	Proto  string
	Listen string // host:port
	Prefix string
	Quiet  bool // log errors only, no line per message (for benchmarks: the line costs more than the message)
}

// Args is the l45net command line for s.
func (s Server) Args() []string {
	a := []string{guest.L45net, s.Proto + "-serve", "-listen", s.Listen}
	if s.Prefix != "" {
		a = append(a, "-prefix", s.Prefix)
	}
	if s.Quiet {
		a = append(a, "-quiet")
	}
	return a
}

// AcceptProbe is a TCP listener on a non-blocking socket: it accepts once
// with nothing pending (expected to fail with EAGAIN), then waits up to
// Timeout for one connection, accepts it and receives one message. Its
// report's ops are listen, accept, accept, recvmsg.
type AcceptProbe struct {
	Listen  string // host:port
	Timeout time.Duration
}

// Args is the l45net command line for a.
func (a AcceptProbe) Args() []string {
	args := []string{guest.L45net, "tcp-accept", "-listen", a.Listen}
	if a.Timeout != 0 {
		args = append(args, "-timeout", a.Timeout.String())
	}
	return args
}

// durationFlag is d as a flag value, empty for 0 (flag left out).
func durationFlag(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// Op is one system call's outcome.
type Op struct {
	Call  string `json:"call"`            // "send", "sendmsg", "recvmsg", "connect", ...
	N     int    `json:"n"`               // return value when >= 0
	Errno string `json:"errno,omitempty"` // e.g. "EAGAIN", empty on success
	Data  string `json:"data,omitempty"`  // bytes received
	Trunc bool   `json:"trunc,omitempty"` // MSG_TRUNC in msg_flags
}

// Failed reports whether the call returned an error.
func (o Op) Failed() bool { return o.Errno != "" }

// Report is what a client run did, in order.
type Report struct {
	Ops []Op `json:"ops"`
	// Comm and ThreadComm are the process's and the I/O thread's names as
	// the kernel saw them.
	Comm       string `json:"comm"`
	ThreadComm string `json:"thread_comm"`
}

// Calls returns the ops of one kind, in order.
func (r *Report) Calls(call string) []Op {
	var out []Op
	for _, o := range r.Ops {
		if o.Call == call {
			out = append(out, o)
		}
	}
	return out
}

// Received is the data of every successful receive, in order.
func (r *Report) Received() []string {
	var out []string
	for _, o := range r.Ops {
		if strings.HasPrefix(o.Call, "recv") && !o.Failed() {
			out = append(out, o.Data)
		}
	}
	return out
}

// ParseReport decodes l45net's standard output.
func ParseReport(b []byte) (*Report, error) {
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("l45net output is not a report (%v): %q", err, b)
	}
	return &r, nil
}

// ServerLine is one message an echo server handled, or one connection a
// Sink read (they print one JSON object per line).
type ServerLine struct {
	From  string `json:"from"`
	Data  string `json:"data"`
	Err   string `json:"errno,omitempty"`
	Bytes int64  `json:"bytes,omitempty"` // a Sink's line: bytes read from the connection
}

// ParseServerLog decodes an echo server's standard output.
func ParseServerLog(b []byte) ([]ServerLine, error) {
	var out []ServerLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var s ServerLine
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			return nil, fmt.Errorf("l45net server line %q: %v", l, err)
		}
		out = append(out, s)
	}
	return out, nil
}
