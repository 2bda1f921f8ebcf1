package traffic

// l45net's timed modes, for benchmarks: a TCP stream into a sink and UDP
// request/response against an echo server, each timed inside the guest
// (the host's view of a guest program's run time includes the agent).

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"layer45/vmimages/guest"
)

// Bulk is a timed TCP stream: Size-byte writes of zeros to a Sink for
// Duration, then l45net shuts down writing and waits until the sink has
// read everything and closed. Its report is a Rate.
type Bulk struct {
	To       string // the sink's host:port
	Duration time.Duration
	Size     int // bytes per write (default 16 KiB)
}

// Args is the l45net command line for c.
func (c Bulk) Args() []string {
	return timedArgs("tcp-bulk", c.To, c.Duration, c.Size, 0)
}

// RR is timed UDP request/response against an echo Server without a
// prefix: one Size-byte request at a time, each waiting for its exact
// echo, for Duration. A request whose echo does not come within Timeout
// counts as lost; an echo that differs from its request ends l45net with
// an error. Its report is a Rate.
type RR struct {
	To       string
	Duration time.Duration
	Size     int           // bytes per request, at least 8 (default 64)
	Timeout  time.Duration // wait for one echo (default 1s)
}

// Args is the l45net command line for c.
func (c RR) Args() []string {
	return timedArgs("udp-rr", c.To, c.Duration, c.Size, c.Timeout)
}

func timedArgs(mode, to string, d time.Duration, size int, timeout time.Duration) []string {
	a := []string{guest.L45net, mode, "-to", to, "-duration", d.String()}
	if size != 0 {
		a = append(a, "-size", strconv.Itoa(size))
	}
	if timeout != 0 {
		a = append(a, "-timeout", timeout.String())
	}
	return a
}

// Sink is a TCP server that reads every connection to its end, then logs
// one ServerLine with the bytes it read and closes the connection.
type Sink struct {
	Listen string // host:port
}

// Args is the l45net command line for s.
func (s Sink) Args() []string {
	return []string{guest.L45net, "tcp-sink", "-listen", s.Listen}
}

// Rate is what a timed client measured.
type Rate struct {
	// Ops are writes (Bulk) or answered requests (RR).
	Ops int64 `json:"ops"`
	// Bytes the application sent: written (Bulk), in answered requests (RR).
	Bytes int64 `json:"bytes"`
	// Lost are RR requests whose echo never came.
	Lost int64 `json:"lost"`
	// Seconds from the first send until the last echo (RR), or until the
	// sink had read everything (Bulk).
	Seconds float64 `json:"seconds"`
}

// PerSecond is Ops per second (0 for an empty measurement).
func (r *Rate) PerSecond() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Seconds
}

// MBPerSecond is Bytes per second in megabytes (10^6 bytes).
func (r *Rate) MBPerSecond() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Seconds
}

// ParseRate decodes a timed client's standard output.
func ParseRate(b []byte) (*Rate, error) {
	var r Rate
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("l45net output is not a rate (%v): %q", err, b)
	}
	return &r, nil
}
