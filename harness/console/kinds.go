package console

import (
	"regexp"
	"strings"
)

// Kinds of crash reports, the values of Report.Kind.
const (
	KindKASAN           = "KASAN"
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
	// fromRIP: the first kernel-mode "RIP: 0010:func+0x1c/0x40" after
	// the header.
	fromRIP
	// fromTrace: the first reliable, non-generic frame of the first
	// "Call Trace:" (or kmemleak "backtrace:") after the header.
	fromTrace
)

// crashKind describes one family of kernel reports.
type crashKind struct {
	// kind is the class the report is filed under (Report.Kind).
	kind string
	// header matches the message of the line that starts the report
	// (printk prefix removed); it is anchored at the start of the message
	// so that user-space text merely containing the words never matches.
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
	// follower marks headers that are usually printed as part of a
	// report that began earlier (the "Oops:" of a NULL dereference, the
	// "Kernel panic" of panic_on_warn): while a report is open they join
	// it instead of starting their own, and they never give it its title
	// if another header does.
	follower bool
}

func re(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// funcRe is a kernel symbol as printed by %pS: name+offset/size.
const funcRe = `(?P<func>[A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+`

// kinds is the table of recognised reports. The first entry whose header
// matches wins, so specific entries come before general ones.
var kinds = []*crashKind{
	{
		kind:    KindKASAN,
		header:  re(`^BUG: KASAN: (?P<type>[a-z][\w -]*?) in ` + funcRe),
		fields:  []*regexp.Regexp{re(`^(?P<access>Read|Write) of size \d+`)},
		title:   "KASAN: {type}[ {access}][ in {func}]",
		culprit: []source{fromHeader, fromTrace},
	},
	{
		kind:    KindNullDeref,
		header:  re(`^BUG: (?:unable to handle )?kernel NULL pointer dereference`),
		title:   "BUG: kernel NULL pointer dereference[ in {func}]",
		culprit: []source{fromRIP, fromTrace},
	},
	{
		kind:    KindPageFault,
		header:  re(`^BUG: unable to handle (?:page fault for address|kernel paging request at)`),
		title:   "BUG: unable to handle page fault[ in {func}]",
		culprit: []source{fromRIP, fromTrace},
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
		kind:    KindSoftLockup,
		header:  re(`^(?:watchdog: )?BUG: soft lockup - CPU#\d+ stuck for \d+s!`),
		title:   "BUG: soft lockup[ in {func}]",
		culprit: []source{fromRIP, fromTrace},
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
		// Any other "BUG: message": Bad page state, spinlock bad magic,
		// Bad rss-counter state, ... The message is cut before its
		// variable part (see cutMessage).
		kind:    KindBUG,
		header:  re(`^BUG: (?P<msg>\S.*)`),
		title:   "BUG: {msg}[ in {func}]",
		culprit: []source{fromRIP, fromTrace},
	},
	{
		kind: KindHardLockup,
		// "NMI watchdog: " in older kernels, "watchdog: " in newer
		// ones, "watchdog: CPU3: " from the buddy detector.
		header:  re(`^(?:NMI )?(?:watchdog: )?(?:CPU\d+: )?Watchdog detected hard LOCKUP on cpu \d+`),
		title:   "watchdog: hard LOCKUP[ in {func}]",
		culprit: []source{fromRIP, fromTrace},
	},
	{
		kind:    KindUBSAN,
		header:  re(`^UBSAN: (?P<type>\S.*?) in \S+:\d+`),
		title:   "UBSAN: {type}[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		// Lockdep reports: a fixed sentence between lines of '=' and '-'.
		kind: KindLockdep,
		header: re(`^WARNING: (?P<what>possible circular locking dependency detected|` +
			`possible recursive locking detected|inconsistent lock state|` +
			`possible irq lock inversion dependency detected|` +
			`(?:HARD|SOFT)IRQ-safe -> (?:HARD|SOFT)IRQ-unsafe lock order detected|` +
			`suspicious RCU usage|bad unlock balance detected!|held lock freed!|` +
			`lock held when returning to user space!|nested lock was not taken|` +
			`bad contention detected!|\S+/\d+ still has locks held!)\s*$`),
		title:   "lockdep: {what}[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		kind:    KindLockdep,
		header:  re(`^\[ BUG: (?P<what>Invalid wait context) \]`),
		title:   "lockdep: {what}[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		// WARN() and friends:
		// "WARNING: CPU: 0 PID: 1 at net/x.c:12 func+0x5/0x10 [mod]".
		kind:    KindWARNING,
		header:  re(`^WARNING: CPU: \d+ PID: \d+ at (?:\S+:\d+ )?(?:` + funcRe + `)?`),
		title:   "WARNING[ in {func}]",
		culprit: []source{fromHeader, fromRIP, fromTrace},
	},
	{
		kind:    KindHungTask,
		header:  re(`^INFO: task \S.*:\d+ blocked for more than \d+ seconds`),
		title:   "INFO: task hung[ in {func}]",
		culprit: []source{fromTrace},
	},
	{
		// rcu_sched, rcu_preempt, rcu_bh, rcu_tasks...; self-detected,
		// detected on other CPUs, expedited.
		kind:    KindRCUStall,
		header:  re(`^(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stalls?\b`),
		title:   "INFO: rcu detected stall[ in {func}]",
		culprit: []source{fromRIP, fromTrace},
	},
	{
		// "general protection fault, probably for non-canonical address
		// 0x...: 0000 [#1]", and since 6.10 with "Oops: " in front.
		kind:    KindGPF,
		header:  re(`^(?:Oops: )?general protection fault\b`),
		title:   "general protection fault[ in {func}]",
		culprit: []source{fromRIP, fromTrace},
	},
	{
		kind:    KindKernelBUG,
		header:  re(`^kernel BUG at \S+:\d+!`),
		title:   "kernel BUG[ in {func}]",
		culprit: []source{fromRIP, fromTrace},
	},
	{
		// Traps that die() reports; "invalid opcode" follows
		// "kernel BUG at", the rest usually stand alone.
		kind: KindOops,
		header: re(`^(?:Oops: )?(?P<trap>invalid opcode|divide error|stack segment|int3|` +
			`alignment check|bounds|overflow|invalid TSS|segment not present|` +
			`coprocessor segment overrun): [0-9a-f]{4} \[#\d+\]`),
		title:    "{trap}[ in {func}]",
		culprit:  []source{fromRIP, fromTrace},
		follower: true,
	},
	{
		// "Oops: 0000 [#1] ..." after a BUG: line; "Oops: Oops: 0000"
		// since 6.10.
		kind:     KindOops,
		header:   re(`^Oops: (?:Oops: )?[0-9a-f]{4} \[#\d+\]`),
		title:    "Oops[ in {func}]",
		culprit:  []source{fromRIP, fromTrace},
		follower: true,
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

// match returns the first kind whose header matches text, with the values
// of its named groups.
func match(text string) (*crashKind, map[string]string) {
	for _, k := range kinds {
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

// title computes the title and culprit of a report whose header (already
// matched into vals) is lines[0].
func (k *crashKind) titleOf(lines []consoleLine, vals map[string]string) (title, fn string) {
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
		switch src {
		case fromHeader:
			if f := cleanFunc(vals["func"]); !isGeneric(f) {
				fn = f
			}
		case fromRIP:
			fn = ripFunc(body)
		case fromTrace:
			fn = traceFunc(body)
		}
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
	return render(k.title, out), fn
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
	case "msg":
		if loc := messageEnd.FindStringIndex(v); loc != nil {
			v = v[:loc[0]]
		}
	case "what":
		v = strings.TrimSuffix(v, "!")
		v = strings.TrimSuffix(v, " detected")
	case "panic":
		// Drop details such as "exitcode=0x00000100".
		if loc := settingRe.FindStringIndex(v); loc != nil {
			v = v[:loc[0]]
		}
	}
	return normaliseText(v)
}
