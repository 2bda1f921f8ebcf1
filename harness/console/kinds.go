package console

import (
	"regexp"
	"strings"
)

// Kinds of crash reports, the values of Report.Kind.
const (
	KindKASAN           = "KASAN"
	KindKMSAN           = "KMSAN"
	KindKCSAN           = "KCSAN"
	KindUBSAN           = "UBSAN"
	KindWARNING         = "WARNING"
	KindLockdep         = "lockdep"
	KindBUG             = "BUG"
	KindNullDeref       = "null deref"
	KindPageFault       = "page fault"
	KindSleepInAtomic   = "sleep in atomic"
	KindSchedAtomic     = "scheduling while atomic"
	KindSoftLockup      = "soft lockup"
	KindHardLockup      = "hard lockup"
	KindHungTask        = "hung task"
	KindRCUStall        = "RCU stall"
	KindGPF             = "GPF"
	KindOops            = "Oops"
	KindKernelBUG       = "kernel BUG"
	KindStackOverflow   = "stack overflow"
	KindPanic           = "panic"
	KindNetdevLeak      = "netdev leak"
	KindMemoryLeak      = "memory leak"
	KindWorkqueueLockup = "workqueue lockup"
)

// source is a place to look for the function to blame.
type source int

const (
	// fromHeader: the "func" group of the header, as in
	// "WARNING: CPU: 0 PID: 1 at net/x.c:12 func+0x5/0x10".
	fromHeader source = iota
	// fromIP: the first kernel-mode instruction pointer after the
	// header: "RIP: 0010:func+0x1c/0x40" (x86), "pc : func+0x1c/0x40"
	// (arm64), "epc : func+0x1c/0x40" (riscv), "PC is at func+0x1c/0x40".
	fromIP
	// fromTrace: the first reliable, non-generic frame of the first
	// stack trace after the header ("Call Trace:", arm64's "Call trace:",
	// kmemleak's "backtrace:", KCSAN's access lines, or frames right
	// after the header as KMSAN prints them).
	fromTrace
)

// crashKind describes one family of kernel reports.
type crashKind struct {
	// kind is the class the report is filed under (Report.Kind).
	kind string
	// header matches the message of the line that starts the report
	// (printk prefix and leading blanks removed); it is anchored at the
	// start of the message so that user-space text merely containing the
	// words never matches.
	header *regexp.Regexp
	// fields are searched in the report's lines after the header; their
	// named groups fill placeholders the header does not.
	fields []*regexp.Regexp
	// title is the template of Report.Title. {name} is replaced by the
	// named group of header or fields, {func} by the culprit function; a
	// [bracketed] part is left out when a placeholder in it is empty.
	title string
	// culprit lists where the function to blame is looked for, in order;
	// generic functions (see genericFrames) are passed over.
	culprit []source
	// skip names further lists of frames that are never to blame in this
	// kind of report (see kindFrames), on top of genericFrames.
	skip []string
	// stall marks reports of a CPU that would not stop running: the frame
	// the timer interrupt found it in is to blame even if the unwinder
	// marks it unreliable.
	stall bool
	// follower marks headers that are usually printed as part of a
	// report that began earlier (the "Oops:" of a NULL dereference, the
	// "Kernel panic" of panic_on_warn): while a report is open they join
	// it instead of starting their own, and they never give it its title
	// if another header does.
	follower bool
	// midDump restricts a follower to joining a report whose dump is
	// still being printed (see pending.settled); after that it starts a
	// report of its own.
	midDump bool
	// lost marks follower headers that, when they give the title, say
	// that the report they follow was lost: "Kernel panic - not syncing:
	// Fatal exception" without the oops. Such reports are Corrupted.
	lost bool

	skipRe *lineSet // compiled skip
}

func re(s string) *regexp.Regexp { return regexp.MustCompile(s) }

const (
	// symbolRe is a kernel symbol name.
	symbolRe = `[A-Za-z_.$][\w.$]*`
	// offsetRe is what %pS appends to it: +offset/size.
	offsetRe = `\+0x[0-9a-f]+/0x[0-9a-f]+`
	// funcRe is a kernel symbol as printed by %pS: name+offset/size.
	funcRe = `(?P<func>` + symbolRe + `)` + offsetRe
	// funcOptRe is a symbol with or without the offset (%ps, or a header
	// cut short).
	funcOptRe = `(?P<func>` + symbolRe + `)(?:` + offsetRe + `)?`
)

// lockdepHeader matches the headline of a lockdep report in the three
// spellings kernels used: "WARNING: what" (4.15 and later), "[ INFO: what ]"
// and "[ BUG: what ]" between lines of '=' (until 4.14), and "BUG: what"
// or "INFO: what" without brackets.
func lockdepHeader(what string) *regexp.Regexp {
	return re(`^(?:\[ )?(?:WARNING|INFO|BUG): (?:` + what + `)\.?(?: \])?\s*$`)
}

// kinds is the table of recognised reports. The first entry whose header
// matches wins, so specific entries come before general ones.
var kinds = []*crashKind{
	// Sanitizers.
	{
		kind:    KindKASAN,
		header:  re(`^BUG: KASAN: (?P<type>[a-z][\w -]*?) in ` + funcOptRe),
		fields:  []*regexp.Regexp{re(`^(?P<access>Read|Write) of size \d+`)},
		title:   "KASAN: {type}[ {access}][ in {func}]",
		culprit: []source{fromHeader, fromTrace},
		skip:    []string{"sanitized"},
	},
	{
		// "BUG: KMSAN: uninit-value in func+0x1/0x2", frames follow
		// the header directly.
		kind:    KindKMSAN,
		header:  re(`^BUG: KMSAN: (?P<type>[a-z][\w-]*) in ` + funcOptRe),
		title:   "KMSAN: {type}[ in {func}]",
		culprit: []source{fromHeader, fromTrace},
		skip:    []string{"sanitized"},
	},
	{
		// "BUG: KCSAN: data-race in func_a / func_b" names the two
		// racing functions (without offsets, sorted); a race with an
		// unknown other side names one, with its offset.
		kind: KindKCSAN,
		header: re(`^BUG: KCSAN: (?P<type>data-race|assert: [a-z -]+?) in ` + funcOptRe +
			`(?: / (?P<func2>` + symbolRe + `)(?:` + offsetRe + `)?)?`),
		title:   "KCSAN: {type}[ in {func}][ / {func2}]",
		culprit: []source{fromHeader, fromTrace},
		skip:    []string{"sanitized"},
	},
	// Faults on kernel addresses: x86 prints "BUG: ...", arm64 and riscv
	// "Unable to handle kernel ... at virtual address".
	{
		kind:    KindNullDeref,
		header:  re(`^(?:BUG: (?:unable to handle )?kernel|Unable to handle kernel) NULL pointer dereference`),
		title:   "BUG: kernel NULL pointer dereference[ in {func}]",
		culprit: []source{fromIP, fromTrace},
	},
	{
		kind: KindPageFault,
		header: re(`^(?:BUG: unable to handle (?:page fault for address|kernel paging request at)|` +
			`Unable to handle kernel paging request at virtual address)`),
		title:   "BUG: unable to handle kernel paging request[ in {func}]",
		culprit: []source{fromIP, fromTrace},
	},
	{
		// arm64 and riscv: "access to user memory", "write to read-only
		// memory", "execute from non-executable memory", ...
		kind:    KindPageFault,
		header:  re(`^Unable to handle kernel (?P<what>[a-z][a-z -]*?) at virtual address`),
		title:   "BUG: unable to handle kernel {what}[ in {func}]",
		culprit: []source{fromIP, fromTrace},
	},
	{
		// arm64 until 5.x: an abort the fault table has no handler for,
		// followed by "Internal error: <what>: <esr> [#1]".
		kind:    KindPageFault,
		header:  re(`^Unhandled fault at 0x[0-9a-f]+`),
		fields:  []*regexp.Regexp{re(`^Internal error: (?P<what>[a-z][\w -]*?): [0-9a-f]+ \[#\d+\]`)},
		title:   "Unhandled fault[: {what}][ in {func}]",
		culprit: []source{fromIP, fromTrace},
	},
	{
		kind:    KindSleepInAtomic,
		header:  re(`^BUG: sleeping function called from invalid context`),
		title:   "BUG: sleeping function called from invalid context[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		kind:    KindSchedAtomic,
		header:  re(`^BUG: scheduling while atomic`),
		title:   "BUG: scheduling while atomic[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		// "watchdog: " since 4.15, "NMI watchdog: " before.
		kind:    KindSoftLockup,
		header:  re(`^(?:NMI )?(?:watchdog: )?BUG: soft lockup - CPU#\d+ stuck for \d+s!`),
		title:   "BUG: soft lockup[ in {func}]",
		culprit: []source{fromIP, fromTrace},
		stall:   true,
	},
	{
		kind:   KindWorkqueueLockup,
		header: re(`^BUG: workqueue lockup\b`),
		title:  "BUG: workqueue lockup",
	},
	{
		kind:    KindBUG,
		header:  re(`^BUG: using (?P<what>[\w]+\(\)) in preemptible`),
		title:   "BUG: using {what} in preemptible code[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		// x86: "BUG: stack guard page was hit at ..." (4.x), with the
		// stack's type ("TASK", "IRQ") since 5.x.
		kind:    KindStackOverflow,
		header:  re(`^BUG: (?:\w+ )?stack guard page was hit at`),
		title:   "BUG: stack guard page was hit[ in {func}]",
		culprit: []source{fromIP, fromTrace},
	},
	{
		// arm64 and riscv run out of stack: the report ends in
		// "Kernel panic - not syncing: kernel stack overflow".
		kind:    KindStackOverflow,
		header:  re(`^Insufficient stack space to handle exception!?`),
		title:   "kernel stack overflow[ in {func}]",
		culprit: []source{fromIP, fromTrace},
	},
	{
		// Lockdep reports of a task that holds or releases locks the
		// wrong way.
		kind: KindLockdep,
		header: lockdepHeader(`(?P<what>bad unlock balance|held lock freed|lock held when returning to user space|` +
			`nested lock was not taken|bad contention|\S+/\d+ still has locks held)(?: detected)?!?`),
		title:   "WARNING: {what}[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		// Messages that come without a stack trace.
		kind:   KindBUG,
		header: re(`^BUG: (?P<msg>Bad rss-counter state|non-zero pgtables_bytes on freeing mm)\b`),
		title:  "BUG: {msg}",
	},
	{
		// Any other "BUG: message": Bad page state, spinlock bad magic,
		// ... The message is cut before its variable part (see
		// normaliseValue).
		kind:    KindBUG,
		header:  re(`^BUG: (?P<msg>\S.*)`),
		title:   "BUG: {msg}[ in {func}]",
		culprit: []source{fromIP, fromTrace},
	},
	{
		kind: KindHardLockup,
		// "NMI watchdog: " in older kernels, "watchdog: " in newer
		// ones, "watchdog: CPU3: " from the buddy detector.
		header:  re(`^(?:NMI )?(?:watchdog: )?(?:CPU\d+: )?Watchdog detected hard LOCKUP on cpu \d+`),
		title:   "watchdog: hard LOCKUP[ in {func}]",
		culprit: []source{fromIP, fromTrace},
		stall:   true,
	},
	{
		kind:    KindUBSAN,
		header:  re(`^UBSAN: (?P<type>\S.*?) in \S+:\d+`),
		title:   "UBSAN: {type}[ in {func}]",
		culprit: []source{fromTrace},
	},
	// Lockdep: a fixed sentence between lines of '=' and '-'.
	{
		kind: KindLockdep,
		header: lockdepHeader(`possible circular locking dependency detected|possible recursive locking detected|` +
			`possible irq lock inversion dependency detected|(?:HARD|SOFT)IRQ-safe -> (?:HARD|SOFT)IRQ-unsafe lock order detected`),
		title:   "possible deadlock[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		kind:    KindLockdep,
		header:  lockdepHeader(`inconsistent lock state`),
		title:   "inconsistent lock state[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		kind:    KindLockdep,
		header:  lockdepHeader(`suspicious RCU usage`),
		title:   "WARNING: suspicious RCU usage[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		kind:    KindLockdep,
		header:  lockdepHeader(`Invalid wait context`),
		title:   "BUG: Invalid wait context[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		// A lock whose key lockdep cannot use: an uninitialised lock.
		kind:    KindLockdep,
		header:  re(`^INFO: trying to register non-static key\b`),
		title:   "INFO: trying to register non-static key[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		// WARN() and friends:
		// "WARNING: CPU: 0 PID: 1 at net/x.c:12 func+0x5/0x10 [mod]".
		kind:    KindWARNING,
		header:  re(`^WARNING: CPU: \d+ PID: \d+ at (?:\S+:\d+ )?(?:` + funcRe + `)?`),
		title:   "WARNING[ in {func}]",
		culprit: []source{fromHeader, fromIP, fromTrace},
	},
	{
		// The same since 6.19:
		// "WARNING: net/x.c:12 at func+0x5/0x10 [mod], CPU#0: dig/231".
		kind:    KindWARNING,
		header:  re(`^WARNING: (?:\S+:\d+ )?at (?:` + funcRe + `|\S+)(?: \[[\w-]+\])?, CPU#\d+: .*/\d+\s*$`),
		title:   "WARNING[ in {func}]",
		culprit: []source{fromHeader, fromIP, fromTrace},
	},
	{
		// The x86 frame unwinder complaining about a corrupt stack,
		// usually in the middle of another report's trace.
		kind:     KindWARNING,
		header:   re(`^WARNING: kernel stack regs at [0-9a-f]+ in \S+ has bad '(?P<reg>\w+)' value`),
		title:    "WARNING: kernel stack regs has bad '{reg}' value",
		follower: true,
		midDump:  true,
	},
	{
		kind:     KindWARNING,
		header:   re(`^WARNING: kernel stack frame pointer at [0-9a-f]+ in \S+ has bad value`),
		title:    "WARNING: kernel stack frame pointer has bad value",
		follower: true,
		midDump:  true,
	},
	{
		// "blocked in I/O wait" since 6.17 for tasks in io_schedule().
		kind:    KindHungTask,
		header:  re(`^INFO: task \S.*:\d+ blocked (?:in I/O wait )?for more than \d+ seconds`),
		title:   "INFO: task hung[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		// rcu_sched, rcu_preempt, rcu_bh, rcu_tasks...; self-detected,
		// detected on other CPUs, expedited.
		kind:    KindRCUStall,
		header:  re(`^(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stalls?\b`),
		title:   "INFO: rcu detected stall[ in {func}]",
		culprit: []source{fromIP, fromTrace},
		stall:   true,
	},
	{
		// "general protection fault, probably for non-canonical address
		// 0x...: 0000 [#1]", "segment-related general protection fault:
		// 0018 [#1]" for a bad segment selector, and since 6.10 with
		// "Oops: " in front.
		kind:    KindGPF,
		header:  re(`^(?:Oops: )?(?:segment-related )?general protection fault\b`),
		title:   "general protection fault[ in {func}]",
		culprit: []source{fromIP, fromTrace},
	},
	{
		kind:    KindKernelBUG,
		header:  re(`^kernel BUG at \S+:\d+!`),
		title:   "kernel BUG[ in {func}]",
		culprit: []source{fromIP, fromTrace},
	},
	{
		// x86's double fault handler on a stack overflow: "kernel stack
		// overflow (double-fault)" until 4.x, "stack guard page" since.
		kind:     KindStackOverflow,
		header:   re(`^(?:Oops: )?(?:stack guard page|kernel stack overflow \(double-fault\)): [0-9a-f]{4} \[#\d+\]`),
		title:    "kernel stack overflow[ in {func}]",
		culprit:  []source{fromIP, fromTrace},
		follower: true,
	},
	{
		// Traps that die() reports; "invalid opcode" follows
		// "kernel BUG at", the rest usually stand alone.
		kind: KindOops,
		header: re(`^(?:Oops: )?(?P<trap>invalid opcode|divide[ _]error|stack segment|int3|` +
			`alignment check|bounds|overflow|invalid TSS|segment not present|` +
			`coprocessor segment overrun): [0-9a-f]{4} \[#\d+\]`),
		title:    "{trap}[ in {func}]",
		culprit:  []source{fromIP, fromTrace},
		follower: true,
	},
	{
		// "Oops: 0000 [#1] ..." after a BUG: line; "Oops: Oops: 0000"
		// since 6.10; riscv prints no error code: "Oops [#1]".
		kind:     KindOops,
		header:   re(`^Oops(?:: (?:Oops: )?[0-9a-f]{4})? \[#\d+\]`),
		title:    "Oops[ in {func}]",
		culprit:  []source{fromIP, fromTrace},
		follower: true,
	},
	{
		// arm64's die(): "Internal error: Oops: 96000005 [#1] SMP" after
		// "Unable to handle kernel ...", "Internal error: Oops - BUG:
		// f2000800 [#1]" after "kernel BUG at ...".
		kind:     KindOops,
		header:   re(`^Internal error: (?P<what>[A-Za-z][\w -]*?): [0-9a-f]+ \[#\d+\]`),
		title:    "Internal error: {what}[ in {func}]",
		culprit:  []source{fromIP, fromTrace},
		follower: true,
	},
	{
		// The hard lockup detector with hardlockup_panic set: newer
		// kernels print "Watchdog detected hard LOCKUP" first, 4.x
		// kernels only panic, from the NMI that found the CPU stuck.
		kind:     KindHardLockup,
		header:   re(`^Kernel panic - not syncing: Hard LOCKUP`),
		title:    "watchdog: hard LOCKUP[ in {func}]",
		culprit:  []source{fromIP, fromTrace},
		stall:    true,
		follower: true,
	},
	{
		// The stack protector found a function's canary overwritten.
		kind:    KindPanic,
		header:  re(`^Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: ` + funcOptRe),
		title:   "kernel panic: stack-protector: Kernel stack is corrupted[ in {func}]",
		culprit: []source{fromHeader, fromTrace},
	},
	{
		// Panics that end an oops, a WARNING or a hang report: on their
		// own, the report they end was lost.
		kind: KindPanic,
		header: re(`^Kernel panic - not syncing: (?P<panic>Fatal exception(?: in interrupt)?|` +
			`(?:\w+: )?panic_on_warn set|hung_task: blocked tasks|softlockup: hung tasks)\b`),
		title:    "kernel panic: {panic}",
		follower: true,
		lost:     true,
	},
	{
		kind:     KindPanic,
		header:   re(`^Kernel panic - not syncing: ?(?P<panic>.*)`),
		title:    "kernel panic: {panic}",
		follower: true,
	},
	{
		kind:     KindNetdevLeak,
		header:   re(`^unregister_netdevice: waiting for (?P<dev>\S+) to become free`),
		title:    "unregister_netdevice: waiting for {dev} to become free",
		follower: true,
	},
	{
		// kmemleak's object report, from /sys/kernel/debug/kmemleak or,
		// with kmemleak.verbose=1, on the console.
		kind:    KindMemoryLeak,
		header:  re(`^(?:kmemleak: )?unreferenced object 0x[0-9a-f]+ \(size \d+\):`),
		title:   "memory leak[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		// The periodic scan's summary on the console.
		kind:     KindMemoryLeak,
		header:   re(`^kmemleak: \d+ new suspected memory leaks?\b`),
		title:    "kmemleak: suspected memory leaks",
		follower: true,
	},
}

// byFirstByte indexes kinds by the bytes their headers can begin with
// (see prefilter.go), in table order.
var byFirstByte [256][]*crashKind

func init() {
	for _, k := range kinds {
		if !strings.HasPrefix(k.header.String(), "^") {
			panic("console: header not anchored: " + k.header.String())
		}
		set, empty := firstBytes(k.header.String())
		for b, ok := range set {
			if ok || empty {
				byFirstByte[b] = append(byFirstByte[b], k)
			}
		}
		if len(k.skip) > 0 {
			var pats []string
			for _, name := range k.skip {
				pats = append(pats, kindFrames[name]...)
			}
			k.skipRe = newLineSet(pats, true)
		}
	}
}

// headerText is the part of a message headers are matched against: some
// consoles indent the headline of a report.
func headerText(text string) string {
	return strings.TrimLeft(text, " \t")
}

// match returns the first kind whose header matches text, with the values
// of its named groups.
func match(text string) (*crashKind, map[string]string) {
	text = headerText(text)
	if text == "" {
		return nil, nil
	}
	for _, k := range byFirstByte[text[0]] {
		m := k.header.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		vals := map[string]string{}
		for i, name := range k.header.SubexpNames() {
			if name != "" && m[i] != "" {
				vals[name] = m[i]
			}
		}
		return k, vals
	}
	return nil, nil
}

// isGeneric reports whether fn (already cleaned) is never to blame in a
// report of kind k.
func (k *crashKind) isGeneric(fn string) bool {
	return isGeneric(fn) || k.skipRe != nil && k.skipRe.MatchString(fn)
}

// wantsFunc reports whether the title of k names a function to blame.
func (k *crashKind) wantsFunc() bool {
	return strings.Contains(k.title, "{func}")
}

// titleOf computes the title and culprit of a report whose header (already
// matched into vals) is lines[0]. evidence tells whether the report holds
// an instruction pointer or a stack frame to look for the culprit in.
func (k *crashKind) titleOf(lines []consoleLine, vals map[string]string) (title, fn string, evidence bool) {
	body := lines[1:]
	for _, f := range k.fields {
		for _, l := range body {
			m := f.FindStringSubmatch(l.text)
			if m == nil {
				continue
			}
			for i, name := range f.SubexpNames() {
				if _, ok := vals[name]; name != "" && !ok && m[i] != "" {
					vals[name] = m[i]
				}
			}
			break
		}
	}
	for _, src := range k.culprit {
		var found bool
		switch src {
		case fromHeader:
			f := cleanFunc(vals["func"])
			found = f != ""
			if !k.isGeneric(f) {
				fn = f
			}
		case fromIP:
			fn, found = ipFunc(body, k.isGeneric)
		case fromTrace:
			fn, found = traceFunc(lines, k.isGeneric, k.stall)
		}
		evidence = evidence || found
		if fn != "" {
			break
		}
	}
	out := map[string]string{"func": fn}
	for name, v := range vals {
		if name != "func" {
			out[name] = normaliseValue(name, v)
		}
	}
	return render(k.title, out), fn, evidence
}

// render fills a title template; see crashKind.title.
func render(tmpl string, vals map[string]string) string {
	var b strings.Builder
	for tmpl != "" {
		i := strings.IndexByte(tmpl, '[')
		if i < 0 {
			b.WriteString(fill(tmpl, vals))
			break
		}
		b.WriteString(fill(tmpl[:i], vals))
		j := strings.IndexByte(tmpl[i:], ']')
		if j < 0 {
			b.WriteString(fill(tmpl[i:], vals))
			break
		}
		part := tmpl[i+1 : i+j]
		if complete(part, vals) {
			b.WriteString(fill(part, vals))
		}
		tmpl = tmpl[i+j+1:]
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

var placeholder = regexp.MustCompile(`\{(\w+)\}`)

func fill(s string, vals map[string]string) string {
	return placeholder.ReplaceAllStringFunc(s, func(p string) string {
		return vals[p[1:len(p)-1]]
	})
}

func complete(s string, vals map[string]string) bool {
	for _, m := range placeholder.FindAllStringSubmatch(s, -1) {
		if vals[m[1]] == "" {
			return false
		}
	}
	return true
}

var (
	hexNumber = regexp.MustCompile(`\b0x[0-9a-fA-F]+\b|\b[0-9a-f]{8,}\b`)
	decNumber = regexp.MustCompile(`\b\d+\b`)
	// messageEnd is where the variable part of a free-form BUG message
	// begins: details after a comma, dash, colon, parenthesis or bracket,
	// the CPU or process it happened in.
	settingRe  = regexp.MustCompile(`\s\S+=`)
	messageEnd = regexp.MustCompile(`,|!| - | ?\(| ?\[| on CPU#?\d| in process | at |\s\S*[:=]`)
	// taskPrefix is the "comm/pid " lockdep puts in front of some
	// sentences.
	taskPrefix = regexp.MustCompile(`^\S+/\d+ `)
)

// normaliseText replaces numbers by placeholders so that titles do not
// depend on addresses, PIDs, CPUs or counters.
func normaliseText(s string) string {
	s = hexNumber.ReplaceAllString(s, "X")
	s = decNumber.ReplaceAllString(s, "N")
	return strings.TrimSpace(s)
}

// normaliseValue prepares the value of a named group for a title.
func normaliseValue(name, v string) string {
	switch name {
	case "func2":
		return cleanFunc(v)
	case "msg":
		if loc := messageEnd.FindStringIndex(v); loc != nil {
			v = v[:loc[0]]
		}
	case "what":
		v = strings.TrimSuffix(v, "!")
		v = strings.TrimSuffix(v, " detected")
		v = taskPrefix.ReplaceAllString(v, "")
	case "trap":
		v = strings.ReplaceAll(v, "_", " ")
	case "panic":
		// Drop details such as "exitcode=0x00000100".
		if loc := settingRe.FindStringIndex(v); loc != nil {
			v = v[:loc[0]]
		}
	}
	return normaliseText(v)
}
