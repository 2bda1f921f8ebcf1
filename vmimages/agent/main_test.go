package main

import (
	"errors"
	"io"
	"testing"
	"time"
)

func TestPrefixLines(t *testing.T) {
	for in, want := range map[string]string{
		"mount /proc: ok":   "l45-agent: mount /proc: ok\n",
		"a\nb\n":            "l45-agent: a\nl45-agent: b\n",
		"panic: x\n\tstack": "l45-agent: panic: x\nl45-agent: \tstack\n",
		"":                  "l45-agent: \n",
	} {
		if got := prefixLines(in); got != want {
			t.Errorf("prefixLines(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseUptime(t *testing.T) {
	if got := parseUptime("2.91 1.80\n"); got != 2910*time.Millisecond {
		t.Errorf("parseUptime = %v", got)
	}
	if got := parseUptime("garbage"); got != 0 {
		t.Errorf("parseUptime(garbage) = %v", got)
	}
}

// portScript plays the reads of a virtio port: 0-byte reads (no host yet)
// before data, then an error.
type portScript struct{ reads []any }

func (p *portScript) Read(b []byte) (int, error) {
	r := p.reads[0]
	p.reads = p.reads[1:]
	switch r := r.(type) {
	case string:
		return copy(b, r), nil
	case error:
		return 0, r
	}
	return 0, io.EOF
}
func (p *portScript) Write(b []byte) (int, error) { return len(b), nil }

func TestPortConnWaitsForHost(t *testing.T) {
	broken := errors.New("EIO")
	sleeps := 0
	p := &portConn{f: &portScript{reads: []any{nil, nil, nil, "frame\n", broken}}, sleep: func(time.Duration) { sleeps++ }}
	b := make([]byte, 64)
	n, err := p.Read(b)
	if string(b[:n]) != "frame\n" || err != nil || sleeps != 3 {
		t.Errorf("Read = %q, %v after %d sleeps", b[:n], err, sleeps)
	}
	if _, err := p.Read(b); err != broken {
		t.Errorf("Read = %v, want the port's error", err)
	}
}
