package console

import (
	"regexp"
	"strings"
)

// Report is one kernel crash found in console output.
type Report struct {
	// Title names the bug the same way on every run: kind, what went
	// wrong and the function to blame, without addresses, PIDs, CPU
	// numbers, timestamps, offsets or modules. For example
	// "KASAN: slab-use-after-free Read in l45_sock_put".
	Title string
	// Kind is the class of report, one of the Kind constants.
	Kind string
	// Func is the function the title blames, "" if none was found.
	Func string
	// Lines holds the console lines of the report: up to the configured
	// number of lines before the header, the report itself and a few
	// lines after it, at most the configured maximum in all. They are
	// cleaned of '\r' and terminal escapes; printk timestamps are kept.
	Lines []string
	// Line is the index (from 0) of the header line among all the lines
	// fed to the detector.
	Line int
}

// Option configures a Detector.
type Option func(*config)

type config struct {
	before, after, max int
	duplicates         bool
}

// WithContext sets how many lines before the header and how many
// unrelated lines after the end of a report are kept in Report.Lines
// (default 10 and 10). The lines after also bound how long the detector
// waits for a report to go on: a report is complete after that many lines
// that are not part of it.
func WithContext(before, after int) Option {
	return func(c *config) {
		c.before, c.after = max(before, 0), max(after, 0)
	}
}

// WithMaxLines bounds the number of lines kept in one report (default
// 500). Longer reports are still recognised as one; their extra lines are
// dropped.
func WithMaxLines(n int) Option {
	return func(c *config) { c.max = max(n, 1) }
}

// WithDuplicates makes the detector return every report, also those whose
// title was already reported. By default a title is reported once per
// detector: a WARN_ON in a loop, a net device that stays busy or an RCU
// stall repeat the same report every few seconds.
func WithDuplicates() Option {
	return func(c *config) { c.duplicates = true }
}

// Detector recognises kernel crash reports in console output fed to it
// line by line. It is not safe for concurrent use; Stream serialises
// access to its detector.
type Detector struct {
	cfg     config
	n       int      // lines fed so far
	ring    []string // last cfg.before lines, oldest first
	stamped bool     // a line with a printk timestamp was seen
	cur     *pending
	seen    map[string]bool
}

// pending is a report whose end has not been seen yet.
type pending struct {
	before []string
	lines  []consoleLine // header first
	kept   int           // lines of lines kept in the report (bounded by max)
	first  int           // stream index of lines[0]
	title  int           // index in lines of the header giving the title
	kind   *crashKind
	vals   map[string]string
	// settled: the report's own dump is over (its call trace closed or
	// an unrelated line came); a new report's header now starts a new
	// report instead of joining this one.
	settled bool
	// ended: an end marker was seen; the lines that follow are context,
	// not part of the report.
	ended bool
	quiet int // lines since the last line that was part of the report
	user  int // user-space lines since the last line of the report
}

// NewDetector returns a detector with the given options.
func NewDetector(opts ...Option) *Detector {
	d := &Detector{
		cfg:  config{before: 10, after: 10, max: 500},
		seen: map[string]bool{},
	}
	for _, o := range opts {
		o(&d.cfg)
	}
	return d
}

// Feed processes console output: one line, or several separated by '\n'
// (a final '\n' is optional). It returns the reports that became complete
// with it, in order. Feeding a text at once or line by line gives the
// same reports.
func (d *Detector) Feed(text string) []Report {
	text = strings.TrimSuffix(text, "\n")
	var out []Report
	for {
		line, rest, more := strings.Cut(text, "\n")
		out = append(out, d.feedLine(line)...)
		if !more {
			return out
		}
		text = rest
	}
}

// Flush ends the stream: a report still in progress is completed and
// returned.
func (d *Detector) Flush() []Report {
	return d.finish(nil)
}

func (d *Detector) feedLine(raw string) []Report {
	l := parseLine(raw)
	if l.kernel {
		d.stamped = true
	}
	// Once the console shows printk timestamps, lines without one are
	// user space talking and never start or shape a report.
	kernel := l.kernel || !d.stamped
	var k *crashKind
	var vals map[string]string
	if kernel {
		k, vals = match(l.text)
	}
	idx := d.n
	d.n++
	var out []Report
	if p := d.cur; p != nil {
		switch {
		case k != nil && (k.follower || !p.settled && k != p.kind):
			// One crash prints several headers (BUG:, Oops:, Kernel
			// panic); they make one report. A header of the kind that
			// titles the report, though, is the next crash.
			p.add(d, l)
			p.quiet, p.ended = 0, false
			if p.kind.follower && !k.follower {
				p.title, p.kind, p.vals = len(p.lines)-1, k, vals
			}
			k = nil
		case k != nil:
			out = d.finish(out)
		default:
			out = d.extend(out, l, kernel)
		}
	}
	if k != nil {
		// Context takes at most half of a report's lines.
		before := d.ring[max(len(d.ring)-d.cfg.max/2, 0):]
		d.cur = &pending{
			before: append([]string(nil), before...),
			first:  idx,
			kind:   k,
			vals:   vals,
		}
		d.cur.add(d, l)
	}
	if p := d.cur; p != nil && len(p.lines) >= 4*d.cfg.max {
		// A dump that never ends (a task list, a flood of frames).
		out = d.finish(out)
	}
	if d.cfg.before > 0 {
		if len(d.ring) == d.cfg.before {
			d.ring = append(d.ring[:0], d.ring[1:]...)
		}
		d.ring = append(d.ring, l.clean)
	}
	return out
}

// extend handles a line that is not a header while a report is open.
func (d *Detector) extend(out []Report, l consoleLine, kernel bool) []Report {
	p := d.cur
	switch {
	case kernel && finalMarker.MatchString(l.text):
		// Nothing follows the end of a panic but a reboot.
		p.add(d, l)
		return d.finish(out)
	case kernel && !p.ended && reportEnd.MatchString(l.text):
		p.add(d, l)
		p.ended, p.settled, p.quiet = true, true, 0
		return out
	case kernel && !p.ended && partOfReport(l.text):
		p.add(d, l)
		p.quiet, p.user = 0, 0
		if traceEnd.MatchString(l.text) {
			p.settled = true
		}
		return out
	case !kernel && !p.settled && p.user < 2*d.cfg.after:
		// User space interleaved with a dump in progress: the dump
		// goes on after it. Without limit, though, a report with
		// nothing to settle it would wait for Flush while user space
		// chats.
		p.add(d, l)
		p.user++
		return out
	}
	if p.quiet >= d.cfg.after {
		return d.finish(out)
	}
	p.add(d, l)
	p.settled = true
	p.quiet++
	if p.quiet >= d.cfg.after {
		return d.finish(out)
	}
	return out
}

func (p *pending) add(d *Detector, l consoleLine) {
	p.lines = append(p.lines, l)
	if len(p.before)+p.kept < d.cfg.max {
		p.kept++
	}
}

// finish completes the pending report, if any, and appends it to out
// unless its title was reported before.
func (d *Detector) finish(out []Report) []Report {
	p := d.cur
	if p == nil {
		return out
	}
	d.cur = nil
	title, fn := p.kind.titleOf(p.lines[p.title:], p.vals)
	if d.seen[title] && !d.cfg.duplicates {
		return out
	}
	d.seen[title] = true
	r := Report{
		Title: title,
		Kind:  p.kind.kind,
		Func:  fn,
		Line:  p.first + p.title,
		Lines: make([]string, 0, len(p.before)+p.kept),
	}
	r.Lines = append(r.Lines, p.before...)
	for _, l := range p.lines[:p.kept] {
		r.Lines = append(r.Lines, l.clean)
	}
	return append(out, r)
}

// reportEnd closes a KASAN, UBSAN or KMSAN report.
var reportEnd = regexp.MustCompile(`^={20,}\s*$`)

// finalMarker closes the report of a panic: the machine stops here.
var finalMarker = regexp.MustCompile(`^---\[ end Kernel panic - not syncing`)

// reportLines matches the lines kernel crash reports are made of, apart from
// stack frames and indented lines: register dumps, the task and machine
// description, the sections of KASAN, lockdep, RCU stall and hung task
// reports. A report goes on while such lines come.
var reportLines = regexp.MustCompile(`^(?:` + strings.Join([]string{
	registerDump, `Code: `, `PKRU: `, `Stack:`, `Call Trace:`, `</?#?[A-Z]{2,8}>`,
	`Modules linked in:`, `CPU: \d+ (?:UID: \d+ )?PID: `, `Hardware name: `, `Workqueue: `,
	`Kernel Offset: `, `---\[ end trace`, `-{20,}`, `={20,}`, `\[ cut here \]`,
	`-{12}\[ cut here \]-{12}`, `#PF: `, `PGD `, `P4D `, `PUD `, `PMD `, `PTE `,
	`note: `, `irq event stamp:`, `hardirqs `, `softirqs `, `Preemption disabled at:`,
	`in_atomic\(\)`, `preempt_count: `, `RCU nest depth: `, `caller is `,
	`(?:Read|Write) of size \d+`, `(?:Allocated|Freed) by task \d+`, `Free of addr `,
	`Last potentially related work creation:`, `Second to last potentially related`,
	`The buggy address `, `Memory state around the buggy address:`, `>[0-9a-f]{16}:`,
	`page:`, `page_type: `, `page dumped because:`, `flags: `, `raw: `, `head: `, `KASAN: `, `Tainted: `,
	`index \d+ is out of range`, `shift exponent `, `load of value `, `signed integer overflow`,
	`division by zero`, `\S+ address \S+ with insufficient space`,
	`\d+ locks? held by `, `no locks held by `, `stack backtrace:`, `other info that might help`,
	`Possible unsafe locking scenario`, `Possible interrupt unsafe locking scenario`,
	`\*\*\* DEADLOCK \*\*\*`, `the existing dependency chain`, `which lock already depends`,
	`but task is already holding`, `\S+ is trying to acquire`, `and this task is already holding`,
	`Chain exists of:`, `\[ BUG: `, `\S+ is trying to release lock`, `but there are no more locks`,
	`rcu: `, `rcu_scheduler_active`, `Sending NMI from CPU`, `NMI backtrace for cpu`,
	`task:\S+ +state:`, `"echo 0 > /proc/sys/kernel/hung_task_timeout_secs"`,
	`Showing all locks held`, `ref_tracker: `, `unreferenced object `, `kmemleak: `,
	`Showing busy workqueues`, `workqueue \S+: flags=`, `pool \d+: cpus=`,
	`list_(?:add|del) corruption`, `refcount_t: `, `ODEBUG: `, `stack segment: `,
	`\d+\.\d+\S* #\d+ (?:Not )?[Tt]ainted`,
}, "|") + `)`)

// partOfReport reports whether a kernel message looks like a line of a
// crash report: empty, indented (frames, lockdep chains, KASAN details,
// kmemleak objects), a stack frame, or one of reportLines.
func partOfReport(text string) bool {
	if text == "" || text[0] == ' ' || text[0] == '\t' {
		return true
	}
	if _, _, ok := parseFrame(text); ok {
		return true
	}
	return reportLines.MatchString(text)
}
