package repro

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"layer45/harness/agent"
	"layer45/harness/console"
	"layer45/harness/pcapdns"
)

// Observations are what one run saw, for the conditions to judge.
type Observations struct {
	// Results are how each step's program ended, by step name; a step
	// missing here never ran (or its end was not seen).
	Results map[string]*agent.Result
	// Crashes are the kernel reports on each guest's console, by guest.
	Crashes map[string][]console.Report
	// Packets crossed the link.
	Packets []pcapdns.Packet
	// Stopped says why the run ended before its last step ("" when every
	// step ran): what was not seen then cannot be told absent.
	Stopped string
}

// Truth is a condition's value on a run: unknown when the run stopped
// before it could be seen.
type Truth int

const (
	False Truth = iota
	True
	Unknown
)

func (t Truth) String() string { return [...]string{"no", "yes", "unknown"}[t] }

func (t Truth) not() Truth {
	switch t {
	case True:
		return False
	case False:
		return True
	}
	return Unknown
}

// Judge evaluates the file's conditions on o: True is reproduced, False
// not, Unknown undecided. Each condition gets a line saying what it
// found.
func Judge(r Criteria, o *Observations) (Truth, []string) {
	var lines []string
	acc := False
	if r.When == "all" {
		acc = True
	}
	for _, c := range r.Of {
		t, why := c.judge(o)
		if c.Not {
			t = t.not()
		}
		lines = append(lines, fmt.Sprintf("[%s] %s: %s", t, c, why))
		if r.When == "all" {
			acc = acc.and(t)
		} else {
			acc = acc.or(t)
		}
	}
	return acc, lines
}

// or and and are Kleene's: a True (or) or a False (and) decides whatever
// is unknown.
func (t Truth) or(u Truth) Truth {
	switch {
	case t == True || u == True:
		return True
	case t == Unknown || u == Unknown:
		return Unknown
	}
	return False
}

func (t Truth) and(u Truth) Truth { return t.not().or(u.not()).not() }

// String says what the condition asks, as the verdict prints it.
func (c Condition) String() string {
	var s string
	switch {
	case c.Crash != nil:
		s = "a kernel crash in " + map[string]string{"any": "any guest", Server: "the server", Client: "the client"}[c.Crash.Guest]
		if c.Crash.Title != "" {
			s += fmt.Sprintf(" titled ...%q...", c.Crash.Title)
		}
	case c.Exit != nil:
		s = fmt.Sprintf("step %s exits with status %d", c.Exit.Step, *c.Exit.Status)
	case c.Output != nil:
		s = fmt.Sprintf("the %s of step %s matches /%s/", map[string]string{"any": "output", "stdout": "stdout", "stderr": "stderr"}[c.Output.Stream], c.Output.Step, c.Output.Regexp)
	case c.DNS != nil:
		s = "a DNS response on the wire answers " + c.DNS.Name
		if c.DNS.Answer != "" {
			s += " with " + c.DNS.Answer
		}
	case c.Wire != nil:
		s = fmt.Sprintf("the bytes %q cross the wire", c.Wire.bytes)
		if c.Wire.Proto != "" || c.Wire.Port != 0 {
			s += " (" + strings.TrimSpace(c.Wire.Proto+" port "+fmt.Sprint(c.Wire.Port)) + ")"
		}
	}
	if c.Not {
		return "NOT " + s + " (line " + fmt.Sprint(c.Line) + ")"
	}
	return s + " (line " + fmt.Sprint(c.Line) + ")"
}

// judge says whether the observation is there, and what it found.
func (c Condition) judge(o *Observations) (Truth, string) {
	// unseen is the value of an observation not found: absent, unless the
	// run stopped before it could happen.
	unseen := func(why string) (Truth, string) {
		if o.Stopped != "" {
			return Unknown, why + ", but the run stopped early: " + o.Stopped
		}
		return False, why
	}
	switch {
	case c.Crash != nil:
		var seen []string
		for _, g := range []string{Server, Client} {
			if c.Crash.Guest != "any" && c.Crash.Guest != g {
				continue
			}
			for _, r := range o.Crashes[g] {
				if strings.Contains(r.Title, c.Crash.Title) {
					return True, fmt.Sprintf("%s: %s", g, r.Title)
				}
				seen = append(seen, g+": "+r.Title)
			}
		}
		if len(seen) > 0 {
			return unseen("other reports only: " + strings.Join(seen, "; "))
		}
		return unseen("no kernel report")
	case c.Exit != nil:
		r := o.Results[c.Exit.Step]
		if r == nil {
			return Unknown, notSeen(o)
		}
		if r.ExitCode == *c.Exit.Status {
			return True, ended(r)
		}
		return False, ended(r)
	case c.Output != nil:
		r := o.Results[c.Output.Step]
		if r == nil {
			return Unknown, notSeen(o)
		}
		streams := map[string][]byte{"stdout": r.Stdout, "stderr": r.Stderr}
		for _, name := range []string{"stdout", "stderr"} {
			if c.Output.Stream != "any" && c.Output.Stream != name {
				continue
			}
			if m := c.Output.re.Find(streams[name]); m != nil {
				return True, fmt.Sprintf("%s has %q", name, m)
			}
		}
		return False, fmt.Sprintf("no match in %d bytes of stdout and %d of stderr", len(r.Stdout), len(r.Stderr))
	case c.DNS != nil:
		msgs := pcapdns.Messages(o.Packets)
		name := dns.Fqdn(strings.ToLower(c.DNS.Name))
		for _, m := range msgs {
			if !m.Response || !strings.EqualFold(m.Question(), name) {
				continue
			}
			if c.DNS.Answer == "" {
				return True, strings.TrimSpace(pcapdns.Summary([]pcapdns.Message{m}))
			}
			for _, rr := range m.Msg.Answer {
				if strings.TrimPrefix(rr.String(), rr.Header().String()) == c.DNS.Answer {
					return True, strings.TrimSpace(pcapdns.Summary([]pcapdns.Message{m}))
				}
			}
		}
		return unseen(fmt.Sprintf("no such response among %d DNS messages", len(msgs)))
	default:
		w := c.Wire
		for _, f := range flows(o.Packets) {
			if (w.Proto == "" || w.Proto == f.proto) && (w.Port == 0 || int(f.src.Port()) == w.Port || int(f.dst.Port()) == w.Port) &&
				bytes.Contains(f.data, w.bytes) {
				return True, fmt.Sprintf("%s %s -> %s carried them", f.proto, f.src, f.dst)
			}
		}
		return unseen(fmt.Sprintf("not in any of %d packets", len(o.Packets)))
	}
}

// notSeen says why a step's result is missing.
func notSeen(o *Observations) string {
	if o.Stopped != "" {
		return "the step never ended: the run stopped early: " + o.Stopped
	}
	return "the step's end was not seen"
}

// ended says how a program ended.
func ended(r *agent.Result) string {
	switch {
	case r.TimedOut:
		return fmt.Sprintf("timed out after %s (status -1)", r.Duration.Round(1e6))
	case r.Signal != "":
		return fmt.Sprintf("killed by %s (status -1)", r.Signal)
	}
	return fmt.Sprintf("exited %d", r.ExitCode)
}

// flow is what one UDP datagram, or one direction of a TCP connection in
// capture order, carried.
type flow struct {
	proto    string
	src, dst netip.AddrPort
	data     []byte
}

func flows(packets []pcapdns.Packet) []*flow {
	var out []*flow
	tcp := map[[2]netip.AddrPort]*flow{}
	for _, p := range packets {
		if p.Proto == "udp" {
			out = append(out, &flow{proto: "udp", src: p.Src, dst: p.Dst, data: p.Payload})
			continue
		}
		k := [2]netip.AddrPort{p.Src, p.Dst}
		f := tcp[k]
		if f == nil {
			f = &flow{proto: "tcp", src: p.Src, dst: p.Dst}
			tcp[k] = f
			out = append(out, f)
		}
		f.data = append(f.data, p.Payload...)
	}
	return out
}
