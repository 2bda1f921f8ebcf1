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
	// Corrupted tells that the report is incomplete: its stack trace
	// (and instruction pointer) is missing or was cut short before the
	// function to blame, or only the panic that ends a report was seen.
	// The title then names the kind of report only, followed by
	// " (corrupted)", and Func is empty.
	Corrupted bool
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
	title  int           // index in lines of the header giving the title
	kind   *crashKind
	vals   map[string]string
	caller string // printk caller id of the header, if printed
	// settled: the report's own dump is over (its call trace closed or
	// an unrelated line came); a new report's header now starts a new
	// report instead of joining this one.
	settled bool
	// ended: an end marker was seen; the lines that follow are context,
	// not part of the report.
	ended bool
	quiet int // lines since the last line that was part of the report
	user  int // user-space lines since the last line of the report
	// probation: the header came without a timestamp in a console that
	// has them. It is the kernel's only if kernel lines of a report
	// follow at once (see feedLine); until then weak counts the kernel
	// lines that neither confirm nor refute it.
	probation bool
	weak      int
	// dropped: printk reported lost messages within the report.
	dropped bool
}

// probationLines is how many kernel lines that are not clearly part of a
// report may follow a header without timestamp before it is dropped: a
// WARN() prints its message between the header and the dump.
const probationLines = 2

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
		out = append(out, d.feedRaw(line)...)
		if !more {
			return out
		}
		text = rest
	}
}

// Flush ends the stream: a report still in progress is completed and
// returned.
func (d *Detector) Flush() []Report {
	if p := d.cur; p != nil && p.probation {
		d.cur = nil
	}
	return d.finish(nil, d.cur != nil && !d.cur.settled)
}

// feedRaw processes one console line (without its '\n'): the messages
// of several printk calls when timestamps occur in its middle.
func (d *Detector) feedRaw(raw string) []Report {
	var out []Report
	for _, l := range parseLines(raw) {
		l.idx = d.n
		out = append(out, d.feedLine(l)...)
	}
	d.n++
	return out
}

func (d *Detector) feedLine(l consoleLine) []Report {
	if l.kernel {
		d.stamped = true
	}
	// Once the console shows printk timestamps, lines without one are
	// user space talking and never shape a report. They may still start
	// one on probation, since consoles do lose a timestamp now and then.
	kernel := l.kernel || !d.stamped
	var k *crashKind
	var vals map[string]string
	if kernel || d.cur == nil || d.cur.probation {
		k, vals = match(l.text)
	}
	var out []Report
	if p := d.cur; p != nil && p.probation {
		switch {
		case k == nil && kernel && strongLine(l.text):
			// The kernel goes on with the report: the header was its.
			p.probation = false
		case k == nil && kernel && p.weak < probationLines:
			p.weak++
			p.add(d, l)
			d.remember(l)
			return nil
		default:
			d.cur = nil
		}
	}
	if !kernel && d.cur != nil {
		k = nil
	}
	if p := d.cur; p != nil {
		switch {
		case k != nil && (k.follower && (!k.midDump || !p.settled) || !p.settled && k != p.kind):
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
			out = d.finish(out, !p.settled)
		default:
			out = d.extend(out, l, kernel)
		}
	}
	if k != nil {
		// Context takes at most half of a report's lines.
		before := d.ring[max(len(d.ring)-d.cfg.max/2, 0):]
		d.cur = &pending{
			before:    append([]string(nil), before...),
			kind:      k,
			vals:      vals,
			caller:    l.caller,
			probation: !kernel,
		}
		d.cur.add(d, l)
	}
	if p := d.cur; p != nil && len(p.lines) >= 4*d.cfg.max {
		// A dump that never ends (a task list, a flood of frames).
		out = d.finish(out, false)
	}
	d.remember(l)
	return out
}

// remember keeps l for the context before the next report.
func (d *Detector) remember(l consoleLine) {
	if d.cfg.before > 0 {
		if len(d.ring) == d.cfg.before {
			d.ring = append(d.ring[:0], d.ring[1:]...)
		}
		d.ring = append(d.ring, l.clean)
	}
}

// extend handles a line that is not a header while a report is open.
func (d *Detector) extend(out []Report, l consoleLine, kernel bool) []Report {
	p := d.cur
	// Lines of user space and of other printk callers are kept for
	// context but are not the report's text. A report printed in
	// interrupt context ("C0") takes the lines of other CPUs: the NMI
	// backtraces it asked for.
	own := kernel && (p.caller == "" || l.caller == "" || l.caller == p.caller ||
		p.caller[0] == 'C' && l.caller[0] == 'C')
	l.other = !own
	if droppedMessages.MatchString(l.clean) {
		// printk's ring overflowed: part of the report is missing.
		p.dropped = true
	}
	switch {
	case own && finalMarker.MatchString(l.text):
		// Nothing follows the end of a panic but a reboot.
		p.add(d, l)
		return d.finish(out, false)
	case own && !p.ended && reportEnd.MatchString(l.text):
		p.add(d, l)
		p.ended, p.settled, p.quiet = true, true, 0
		return out
	case own && !p.ended && partOfReport(l.text):
		p.add(d, l)
		p.quiet, p.user = 0, 0
		if traceEnd.MatchString(l.text) {
			p.settled = true
		}
		return out
	case !own && !p.settled && p.user < 2*d.cfg.after:
		// User space (or another task) interleaved with a dump in
		// progress: the dump goes on after it. Without limit, though,
		// a report with nothing to settle it would wait for Flush while
		// user space chats.
		p.add(d, l)
		p.user++
		return out
	}
	if p.quiet >= d.cfg.after {
		return d.finish(out, false)
	}
	p.add(d, l)
	p.settled = true
	p.quiet++
	if p.quiet >= d.cfg.after {
		return d.finish(out, false)
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
// unless its title was reported before. cut tells that the report was
// still printing its dump when the console ended or the next crash began.
func (d *Detector) finish(out []Report, cut bool) []Report {
	p := d.cur
	if p == nil {
		return out
	}
	d.cur = nil
	own := make([]consoleLine, 0, len(p.lines)-p.title)
	for _, l := range p.lines[p.title:] {
		if !l.other {
			own = append(own, l)
		}
	}
	title, fn, evidence := p.kind.titleOf(own, p.vals)
	// A report is corrupted when the header that titles it says that the
	// report it belongs to was lost, or when the function to blame cannot
	// be found because the report has no stack trace and no instruction
	// pointer, or was cut short (or lost lines) before they came.
	corrupted := p.kind.lost || p.kind.wantsFunc() && fn == "" && (!evidence || cut || p.dropped)
	if corrupted {
		title += " (corrupted)"
	}
	if d.seen[title] && !d.cfg.duplicates {
		return out
	}
	d.seen[title] = true
	r := Report{
		Title:     title,
		Kind:      p.kind.kind,
		Func:      fn,
		Corrupted: corrupted,
		Line:      p.lines[p.title].idx,
		Lines:     make([]string, 0, len(p.before)+p.kept),
	}
	r.Lines = append(r.Lines, p.before...)
	for _, l := range p.lines[:p.kept] {
		r.Lines = append(r.Lines, l.clean)
	}
	return append(out, r)
}

// reportEnd closes a KASAN, UBSAN or KMSAN report.
var reportEnd = regexp.MustCompile(`^={20,}\s*$`)

// droppedMessages is what printk prints when its ring buffer overflowed
// before the console could print everything: a line of its own since 5.x,
// in front of the next message before.
var droppedMessages = regexp.MustCompile(`^\*\* \d+ printk messages dropped \*\*`)

// finalMarker closes the report of a panic: the machine stops here.
var finalMarker = regexp.MustCompile(`^---\[ end Kernel panic - not syncing`)

// reportLines matches the lines kernel crash reports are made of, apart from
// stack frames and indented lines: register dumps, the task and machine
// description, the sections of KASAN, KMSAN, KCSAN, lockdep, RCU stall and
// hung task reports, arm64 and riscv fault details. A report goes on while
// such lines come.
var reportLines = newLineSet(reportLinePatterns, false)

var reportLinePatterns = []string{
	// The dump of a task and its machine.
	registerDump, `Code: `, `PKRU: `, `Stack:`, `Call [Tt]race:`, `</?#?[A-Z]{2,8}>`,
	`Modules linked in:`, `CPU: \d+ (?:UID: \d+ )?PID: `, `Hardware name: `, `Workqueue: `,
	`Kernel Offset: `, `---\[ end trace`, `-{20,}`, `={20,}`, `\[ cut here \]`,
	`-{12}\[ cut here \]-{12}`, `#PF: `, `PGD `, `P4D `, `PUD `, `PMD `, `PTE `, `IP: `,
	`task: [0-9a-f]+ task\.stack: `, `note: `, `Tainted: `, `\d+\.\d+\S* #\d+ (?:Not )?[Tt]ainted`,
	`irq event stamp:`, `hardirqs `, `softirqs `, `Preemption disabled at:`,
	`in_atomic\(\)`, `preempt_count: `, `RCU nest depth: `, `caller is `,
	// arm64 and riscv.
	`pc : `, `lr : `, `sp : `, `pstate: `, `x\d+ ?: `, `PC is at `, `LR is at `, `epc : `,
	`Mem abort info:`, `Data abort info:`, `\[[0-9a-f]+\] (?:user address|pgd=)`,
	`(?:user|swapper) pgtable: `, `Internal error: `, `Process \S+ \(pid: \d+, stack limit`,
	`Exception stack\(`, `[0-9a-f]{4}:(?: +[0-9a-f]{16})+\s*$`,
	`Insufficient stack space`, `(?:Task|IRQ|Overflow) stack: +\[`, `ESR: 0x`, `FAR: 0x`,
	// KASAN, KMSAN, KCSAN, UBSAN.
	`(?:Read|Write) of size \d+`, `(?:Allocated|Freed) by task \d+`, `Free of addr `,
	`Last potentially related work creation:`, `Second to last potentially related`,
	`The buggy address `, `Memory state around the buggy address:`, `>[0-9a-f]{16}:`,
	`page:`, `page_type: `, `page dumped because:`, `flags: `, `raw: `, `head: `, `KASAN: `,
	`Uninit was (?:created|stored to memory) at:`, `Local variable \S+ created at:`,
	`Bytes \d+-\d+ of \d+ are uninitialized`, `Memory access of size \d+ starts at `,
	`Data copied to user address `,
	`(?:race at unknown origin, with )?(?:read|write)(?: \(marked\))?(?:-write)? to 0x[0-9a-f]+ of \d+ bytes by `,
	`value changed: `, `Reported by Kernel Concurrency Sanitizer on:`,
	`index \d+ is out of range`, `shift exponent `, `load of value `, `signed integer overflow`,
	`division by zero`, `\S+ address \S+ with insufficient space`,
	// Lockdep.
	`\d+ locks? held by `, `no locks held by `, `stack backtrace:`, `other info that might help`,
	`Possible unsafe locking scenario`, `Possible interrupt unsafe locking scenario`,
	`\*\*\* DEADLOCK \*\*\*`, `the existing dependency chain`, `which lock already depends`,
	`but task is already holding`, `\S+ is trying to acquire`, `and this task is already holding`,
	`Chain exists of:`, `\[ BUG: `, `\S+ is trying to release lock`, `but there are no more locks`,
	`-> #\d+ `, `inconsistent \{`, `\S+ \[HC\d\[\d\]:SC\d\[\d\]:HE\d:SE\d\] takes:`,
	`\{[A-Z-]+\} state was registered at:`, `[0-9a-f]{16} \(`, `\S+/\d+ is freeing memory `,
	`[Tt]he code is fine but needs lockdep annotation`, `you didn't initialize this object before use`,
	`turning off the locking correctness validator`,
	// Stalls, hung tasks and lockups.
	`rcu: `, `rcu_scheduler_active`, `Sending NMI from CPU`, `NMI backtrace for cpu`,
	`Task dump for CPU \d+:`, `\S+ +[RDS] +(?:running task +)?\d+ +\d+ +\d+ 0x[0-9a-f]+$`,
	`task:\S+ +state:`, `"echo 0 > /proc/sys/kernel/hung_task_timeout_secs"`,
	`Showing all locks held`, `Showing busy workqueues`, `workqueue \S+: flags=`, `pool \d+: cpus=`,
	`unwind stack type:`, `[0-9a-f]{16}: [0-9a-f]{16} \(`,
	// Leaks and debug checks.
	`ref_tracker: `, `unreferenced object `, `kmemleak: `,
	`list_(?:add|del) corruption`, `refcount_t: `, `ODEBUG: `, `stack segment: `,
}

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

// strongLines are lines only a crash report prints: they confirm a header
// that came without a timestamp.
var strongLines = newLineSet(strongLinePatterns, false)

var strongLinePatterns = []string{
	registerDump, `Call [Tt]race:`, `Modules linked in:`, `CPU: \d+ (?:UID: \d+ )?PID: `,
	`Hardware name: `, `#PF: `, `(?:Read|Write) of size \d+`, `pc : `, `epc : `, `Mem abort info:`,
	`Oops`, `Internal error: `, `\d+\.\d+\S* #\d+ (?:Not )?[Tt]ainted`, `(?:Not t|T)ainted[: ]`,
	`irq event stamp:`,
}

// strongLine reports whether a kernel message is clearly a line of a crash
// report: a stack frame or one of strongLines.
func strongLine(text string) bool {
	if _, _, ok := parseFrame(text); ok {
		return true
	}
	return strongLines.MatchString(strings.TrimLeft(text, " \t"))
}
