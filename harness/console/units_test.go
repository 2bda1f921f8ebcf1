package console

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		raw    string
		text   string
		kernel bool
	}{
		{"[   12.345678] BUG: x", "BUG: x", true},
		{"[12345.000001] BUG: x", "BUG: x", true},
		{"[   12.345678][  T231] BUG: x", "BUG: x", true},
		{"[   12.345678][    C0] BUG: x", "BUG: x", true},
		{"<4>[   12.345678] BUG: x", "BUG: x", true},
		{"[   12.345678]  func+0x1/0x2", " func+0x1/0x2", true},
		{"[   12.345678] ", "", true},
		{"[   12.345678] BUG: x\r\r", "BUG: x", true},
		{"; <<>> DiG 9.18 <<>> example.t[   25.101204] BUG: kernel NULL", "BUG: kernel NULL", true},
		{"\x1b[1m[   12.345678] BUG: x\x1b[0m", "BUG: x", true},
		{"BUG: user space", "BUG: user space", false},
		{"progress [1.5] done", "progress [1.5] done", false},
		{"[1.234567 not a stamp", "[1.234567 not a stamp", false},
		{"[  T231] BUG: x", "BUG: x", true},
		{" [   12.345678] BUG: x", "BUG: x", true},
		{"[   12.345678] BUG: x[   12.345679] y", "BUG: x", true},
	}
	for _, tt := range tests {
		l := parseLine(tt.raw)
		if l.text != tt.text || l.kernel != tt.kernel {
			t.Errorf("parseLine(%q) = %q, %v; want %q, %v", tt.raw, l.text, l.kernel, tt.text, tt.kernel)
		}
	}
}

func TestParseLines(t *testing.T) {
	got := parseLines("user[   12.345678][  T231] BUG: x in f+0x1/0x2[   12.345679][    C1] other[   12.345680] third")
	want := []consoleLine{
		{clean: "user[   12.345678][  T231] BUG: x in f+0x1/0x2", text: "BUG: x in f+0x1/0x2", kernel: true, caller: "T231"},
		{clean: "[   12.345679][    C1] other", text: "other", kernel: true, caller: "C1"},
		{clean: "[   12.345680] third", text: "third", kernel: true},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(consoleLine{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCleanText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"\x1b[2J\x1b[01;01HSeaBIOS", "SeaBIOS"},
		{"\x1b[=3hx", "x"},
		{"\x1b[?25hx\x1b[0m", "x"},
		{"\x1b]0;title\x07x", "x"},
		{"\x1b(Bx\x1bcy", "xy"},
		{"a\tb\x00c\x7f", "a\tbc"},
		{"bad \xff byte", "bad \uFFFD byte"},
	}
	for _, tt := range tests {
		if got := cleanText(tt.in); got != tt.want {
			t.Errorf("cleanText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFrames(t *testing.T) {
	tests := []struct {
		text       string
		fn         string
		unreliable bool
		ok         bool
	}{
		{" l45_sock_put+0x2c/0x80 [layer45]", "l45_sock_put", false, true},
		{" ? __warn+0x7d/0xc0", "__warn", true, true},
		{" __mutex_lock.constprop.0+0x399/0x700", "__mutex_lock", false, true},
		{" l45_detach.cold+0x5/0x7 [layer45]", "l45_detach", false, true},
		{" l45_flow_unlink.isra.0+0x2e/0x110 [layer45]", "l45_flow_unlink", false, true},
		{"    [<00000000d6a8e2b1>] kmalloc_trace+0x26/0x90", "kmalloc_trace", false, true},
		{"kmemleak:     [<000000009b3f6c1e>] l45_flow_new+0x3a/0x140 [layer45]", "l45_flow_new", false, true},
		{"       _raw_spin_lock+0x30/0x40", "_raw_spin_lock", false, true},
		{" <TASK>", "", false, false},
		{"RIP: 0033:0x7f3a1d21ec17", "", false, false},
		{"Read of size 4 at addr ffff888004b3a0c8 by task dig/231", "", false, false},
	}
	for _, tt := range tests {
		fn, unreliable, ok := parseFrame(tt.text)
		if fn != tt.fn || unreliable != tt.unreliable || ok != tt.ok {
			t.Errorf("parseFrame(%q) = %q, %v, %v; want %q, %v, %v",
				tt.text, fn, unreliable, ok, tt.fn, tt.unreliable, tt.ok)
		}
	}
}

func TestGenericFrames(t *testing.T) {
	generic := []string{
		"dump_stack_lvl", "__warn", "report_bug", "handle_bug", "exc_invalid_op",
		"asm_exc_page_fault", "asm_sysvec_apic_timer_interrupt", "kasan_report",
		"__kasan_kmalloc", "__asan_load8", "__might_sleep", "__might_resched",
		"__ubsan_handle_out_of_bounds", "lock_acquire", "__lock_acquire",
		"_raw_spin_lock_irqsave", "native_queued_spin_lock_slowpath", "__mutex_lock",
		"mutex_lock_nested", "down_write", "schedule", "schedule_timeout", "__schedule",
		"kmalloc_trace", "__kmalloc", "kmem_cache_alloc", "kfree",
		"refcount_warn_saturate", "__list_del_entry_valid", "check_preemption_disabled",
		"panic", "watchdog_timer_fn", "",
	}
	for _, fn := range generic {
		if !isGeneric(fn) {
			t.Errorf("%q should be generic", fn)
		}
	}
	specific := []string{
		"l45_sock_put", "inet_release", "tcp_sendmsg", "udp_queue_rcv_one_skb",
		"process_one_work", "call_timer_fn", "downstream_poll", "scheduler_tick_x",
		"kfree_skb_reason", "mutexed_thing", "l45_schedule_gc",
	}
	for _, fn := range specific {
		if isGeneric(fn) {
			t.Errorf("%q should not be generic", fn)
		}
	}
	// The string helpers are the culprit's tools only where a sanitizer
	// reports them.
	kasan, gpf := kindOf(t, KindKASAN), kindOf(t, KindGPF)
	for _, fn := range []string{"memcpy", "memcpy_orig", "__memset", "strscpy"} {
		if !kasan.isGeneric(fn) {
			t.Errorf("%q should be generic in a KASAN report", fn)
		}
		if gpf.isGeneric(fn) {
			t.Errorf("%q should not be generic in a GPF", fn)
		}
	}
}

// kindOf returns the first entry of the table of the given kind.
func kindOf(t *testing.T, kind string) *crashKind {
	t.Helper()
	for _, k := range kinds {
		if k.kind == kind {
			return k
		}
	}
	t.Fatalf("no kind %q", kind)
	return nil
}

func TestRender(t *testing.T) {
	tests := []struct {
		tmpl string
		vals map[string]string
		want string
	}{
		{"KASAN: {type}[ {access}][ in {func}]", map[string]string{"type": "use-after-free", "access": "Read", "func": "f"},
			"KASAN: use-after-free Read in f"},
		{"KASAN: {type}[ {access}][ in {func}]", map[string]string{"type": "double-free", "func": "f"},
			"KASAN: double-free in f"},
		{"WARNING[ in {func}]", map[string]string{}, "WARNING"},
		{"a  {x}  b", map[string]string{"x": ""}, "a b"},
		{"unbalanced [ in {func}", map[string]string{"func": "f"}, "unbalanced [ in f"},
	}
	for _, tt := range tests {
		if got := render(tt.tmpl, tt.vals); got != tt.want {
			t.Errorf("render(%q, %v) = %q, want %q", tt.tmpl, tt.vals, got, tt.want)
		}
	}
}

// TestTitles runs short, synthetic reports (header variants of other
// kernel versions, corner cases) through the detector.
func TestTitles(t *testing.T) {
	rip := "RIP: 0010:l45_f+0x1c/0x40 [layer45]"
	tests := []struct {
		name  string
		lines []string
		title string
		kind  string
	}{
		{"old null deref", []string{"BUG: unable to handle kernel NULL pointer dereference at 0000000000000010", rip},
			"BUG: kernel NULL pointer dereference in l45_f", KindNullDeref},
		{"old paging request", []string{"BUG: unable to handle kernel paging request at ffffc90000401000", rip},
			"BUG: unable to handle kernel paging request in l45_f", KindPageFault},
		{"4.x IP line", []string{"BUG: unable to handle kernel NULL pointer dereference at 0000000000000010",
			"IP: [<ffffffffc06f1a1c>] l45_f+0x1c/0x40 [layer45]"}, "BUG: kernel NULL pointer dereference in l45_f", KindNullDeref},
		{"4.4 RIP line", []string{"general protection fault: 0000 [#1] SMP",
			"RIP: 0010:[<ffffffffc06f1a1c>]  [<ffffffffc06f1a1c>] l45_f+0x1c/0x40 [layer45]"}, "general protection fault in l45_f", KindGPF},
		{"divide_error", []string{"divide_error: 0000 [#1] SMP", rip}, "divide error in l45_f", KindOops},
		{"6.12 GPF", []string{"Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] PREEMPT SMP NOPTI", rip},
			"general protection fault in l45_f", KindGPF},
		{"old GPF", []string{"general protection fault: 0000 [#1] SMP", rip},
			"general protection fault in l45_f", KindGPF},
		{"6.12 invalid opcode", []string{"Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI", rip},
			"invalid opcode in l45_f", KindOops},
		{"6.12 oops", []string{"Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI", rip}, "Oops in l45_f", KindOops},
		{"oops without RIP", []string{"Oops: 0000 [#1] SMP"}, "Oops (corrupted)", KindOops},
		{"warning without file", []string{"WARNING: CPU: 1 PID: 0 at l45_g+0x5/0x10 [layer45]"}, "WARNING in l45_g", KindWARNING},
		{"warning 6.12", []string{"WARNING: CPU: 1 PID: 0 at net/x.c:12 l45_g+0x5/0x10 [layer45]", "CPU: 1 UID: 0 PID: 0 Comm: swapper/1"},
			"WARNING in l45_g", KindWARNING},
		{"warning 7.x without file", []string{"WARNING: at l45_g+0x5/0x10 [layer45], CPU#1: kworker/1:2/87"}, "WARNING in l45_g", KindWARNING},
		{"warning 7.x unsymbolized", []string{"WARNING: net/x.c:12 at 0xffffffffc06f1a1c, CPU#1: dig/231", rip}, "WARNING in l45_f", KindWARNING},
		{"KCSAN assert", []string{"BUG: KCSAN: assert: race in l45_a / l45_b"}, "KCSAN: assert: race in l45_a / l45_b", KindKCSAN},
		{"KASAN double-free 6.1", []string{"BUG: KASAN: double-free or invalid-free in kfree+0xe1/0x250", "", "Call Trace:",
			" <TASK>", " dump_stack_lvl+0x44/0x5c", " kfree+0xe1/0x250", " l45_release+0x35/0x60 [layer45]", " </TASK>"},
			"KASAN: double-free or invalid-free in l45_release", KindKASAN},
		{"KASAN write", []string{"BUG: KASAN: slab-out-of-bounds in l45_copy+0x5a/0x90 [layer45]", "Write of size 16 at addr ffff888004b3a0c8 by task dig/231"},
			"KASAN: slab-out-of-bounds Write in l45_copy", KindKASAN},
		{"RCU expedited", []string{"rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-... } 21003 jiffies s: 389 root: 0x2/.", rip},
			"INFO: rcu detected stall in l45_f", KindRCUStall},
		{"RCU tasks", []string{"INFO: rcu_tasks detected stalls on tasks:"}, "INFO: rcu detected stall (corrupted)", KindRCUStall},
		{"panic VFS", []string{"Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"},
			"kernel panic: VFS: Unable to mount root fs on unknown-block(N,N)", KindPanic},
		{"generic BUG", []string{"BUG: Bad page state in process dig  pfn:1a2b3", "Call Trace:", " l45_f+0x1/0x2"},
			"BUG: Bad page state in l45_f", KindBUG},
		{"generic BUG spinlock", []string{"BUG: spinlock bad magic on CPU#1, dig/231", rip}, "BUG: spinlock bad magic in l45_f", KindBUG},
		{"generic BUG rss", []string{"BUG: Bad rss-counter state mm:00000000a1b2c3d4 type:MM_ANONPAGES val:1"}, "BUG: Bad rss-counter state", KindBUG},
		{"lockdep recursive", []string{"WARNING: possible recursive locking detected", "Call Trace:", " lock_acquire+0xd3/0x2f0", " l45_h+0x1/0x2"},
			"possible deadlock in l45_h", KindLockdep},
		{"lockdep recursive 4.x", []string{"[ INFO: possible recursive locking detected ]", "Call Trace:", " l45_h+0x1/0x2"},
			"possible deadlock in l45_h", KindLockdep},
		{"lockdep suspicious RCU 4.x", []string{"[ INFO: suspicious RCU usage. ]", "Call Trace:", " l45_h+0x1/0x2"},
			"WARNING: suspicious RCU usage in l45_h", KindLockdep},
		{"lockdep bad unlock", []string{"WARNING: bad unlock balance detected!"}, "WARNING: bad unlock balance (corrupted)", KindLockdep},
		{"lockdep held lock freed, BUG", []string{"BUG: held lock freed!", "Call Trace:", " kfree+0x1/0x2", " l45_h+0x1/0x2"},
			"WARNING: held lock freed in l45_h", KindLockdep},
		{"lockdep locks held", []string{"WARNING: dig/231 still has locks held!", "Call Trace:", " l45_h+0x1/0x2"},
			"WARNING: still has locks held in l45_h", KindLockdep},
		{"arm64 stall", []string{"rcu: INFO: rcu_preempt self-detected stall on CPU", "pc : l45_f+0x1c/0x40 [layer45]"},
			"INFO: rcu detected stall in l45_f", KindRCUStall},
		{"arm64 4.x oops", []string{"Internal error: Oops: 96000005 [#1] PREEMPT SMP", "PC is at l45_f+0x1c/0x40 [layer45]"},
			"Internal error: Oops in l45_f", KindOops},
		{"arm64 write to read-only memory", []string{"Unable to handle kernel write to read-only memory at virtual address ffff800008a3b000",
			"pc : l45_f+0x1c/0x40 [layer45]"}, "BUG: unable to handle kernel write to read-only memory in l45_f", KindPageFault},
		{"riscv Oops", []string{"Oops [#1]", "epc : l45_f+0x1c/0x40 [layer45]"}, "Oops in l45_f", KindOops},
		{"stack guard 5.x", []string{"BUG: IRQ stack guard page was hit at 00000000a1b2c3d4 (stack is 00000000b1c2d3e4..00000000c1d2e3f4)", rip},
			"BUG: stack guard page was hit in l45_f", KindStackOverflow},
		{"kernel stack overflow 4.x", []string{"kernel stack overflow (double-fault): 0000 [#1] SMP", rip},
			"kernel stack overflow in l45_f", KindStackOverflow},
		{"hard lockup without prefix", []string{"Watchdog detected hard LOCKUP on cpu 0", rip}, "watchdog: hard LOCKUP in l45_f", KindHardLockup},
		{"hard lockup, buddy detector", []string{"watchdog: CPU3: Watchdog detected hard LOCKUP on cpu 3", rip},
			"watchdog: hard LOCKUP in l45_f", KindHardLockup},
		{"kmemleak newer backtrace", []string{"unreferenced object 0xffff888004c1e300 (size 128):", "  backtrace (crc 5d6ae1c2):",
			"    kmalloc_trace+0x26/0x90", "    l45_flow_new+0x3a/0x140 [layer45]"}, "memory leak in l45_flow_new", KindMemoryLeak},
		{"follower first, then the real header", []string{"Oops: 0000 [#1] SMP", "BUG: KASAN: use-after-free in l45_k+0x1/0x2"},
			"KASAN: use-after-free in l45_k", KindKASAN},
		{"KASAN header cut", []string{"BUG: KASAN: use-after-free in l45_k"}, "KASAN: use-after-free in l45_k", KindKASAN},
		{"dropped messages", []string{"general protection fault: 0000 [#1] SMP", "** 3 printk messages dropped ** [    1.000000] Call Trace:",
			" __schedule+0x1/0x2"}, "general protection fault (corrupted)", KindGPF},
		{"panic alone", []string{"Kernel panic - not syncing: kernel: panic_on_warn set ..."}, "kernel panic: kernel: panic_on_warn set (corrupted)", KindPanic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reps := feedAll(strings.Join(tt.lines, "\n"))
			if len(reps) != 1 {
				t.Fatalf("%d reports, want 1: %+v", len(reps), reps)
			}
			if reps[0].Title != tt.title || reps[0].Kind != tt.kind {
				t.Errorf("got %q (%s), want %q (%s)", reps[0].Title, reps[0].Kind, tt.title, tt.kind)
			}
		})
	}
}

// TestNotCrashes lists console lines that look like crash headers but are
// not: user space, or kernel messages that merely contain the words.
func TestNotCrashes(t *testing.T) {
	stamped := []string{
		"[    1.000000] layer45: counters BUG=0 WARNING=0",
		"[    1.000000] Kernel command line: panic=-1 oops=panic softlockup_panic=1",
		"[    1.000000] ACPI BIOS Error (bug): Could not resolve symbol",
		"[    1.000000] rcu: INFO: lockdep is turned off.",
		"[    1.000000] KASAN: null-ptr-deref in range [0x0000000000000010-0x0000000000000017]",
		"[    1.000000] kmemleak: Kernel memory leak detector initialized (mem pool available: 15706)",
		"[    1.000000] kmemleak: Automatic memory scanning thread started",
		"[    1.000000] NMI watchdog: Perf NMI watchdog permanently disabled",
		"[    1.000000] WARNING: recursion requested but not available",
		"[    1.000000] WARNING: workqueue cpumask: online intersect > possible intersect",
		"[    1.000000] Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on",
		"[    1.000000] NMI watchdog: Enabled. Permanently consumes one hw-PMU counter.",
		"[    1.000000] traps: dig[231] general protection fault ip:7f3a1d2a6c5b sp:7ffd4e0a2a30 error:0",
		"[    1.000000] traps: dig[231] trap divide error ip:401136 sp:7ffd4e0a2a30 error:0",
		"[    1.000000] bug_hunter: 3 probes registered (BUG_ON, WARN_ON, panic)",
		"[    1.000000] Unknown kernel command line parameters \"BUG_ON_SELFTEST=0\", will be passed to user space.",
		"[    1.000000] INFO: lockdep is turned off.",
		"[    1.000000] kmemleak: Kernel memory leak detector disabled",
		"BUG: user space printed this",
		"WARNING: CPU: 0 PID: 1 at fake.c:1 fake+0x0/0x1",
		"Kernel panic - not syncing: a shell script said so",
		";; WARNING: recursion requested but not available",
		"dig: WARNING: recursion requested but not available",
	}
	if reps := feedAll(strings.Join(stamped, "\n")); len(reps) != 0 {
		t.Errorf("found %d reports, want none: %+v", len(reps), reps)
	}
	// A header without timestamp in a console that has them is the
	// kernel's only if report lines follow at once.
	probation := []string{
		"[    1.000000] layer45: loaded",
		"BUG: unable to handle page fault for address: 0 (a test's expected output)",
		"[    1.000001] layer45: flow table: 2 entries",
		"[    1.000002] layer45: gc timer armed",
		"[    1.000002] layer45: hook attached",
		"[    1.000003] Modules linked in: too late to confirm",
		"INFO: task l45-selftest:1 blocked for more than 1 seconds.",
		"l45-selftest: done",
		"[    1.000004] Call Trace:",
		"Unable to handle kernel NULL pointer dereference (the last line of the console)",
	}
	if reps := feedAll(strings.Join(probation, "\n")); len(reps) != 0 {
		t.Errorf("found %d reports, want none: %+v", len(reps), reps)
	}
	// Without any printk timestamp every line is taken for the kernel's;
	// still, sentences merely starting with WARNING: are no reports.
	unstamped := []string{
		"WARNING: recursion requested but not available",
		";; WARNING: recursion requested but not available",
		"dig: WARNING: recursion requested but not available",
		"dnsmasq[88]: WARNING: failed to seed the random number generator",
		"grep: kernel BUG at: No such file or directory",
		"INFO: task list follows",
	}
	if reps := feedAll(strings.Join(unstamped, "\n")); len(reps) != 0 {
		t.Errorf("found %d reports, want none: %+v", len(reps), reps)
	}
}

// TestNoTimestamps checks that consoles without printk timestamps
// (printk.time=0, or dmesg -t) give the same titles.
func TestNoTimestamps(t *testing.T) {
	for _, name := range []string{"warning", "kasan_slab_use_after_free", "null_deref", "lockdep_circular", "hung_task"} {
		text := readFile(t, "testdata/crashes/"+name+".txt")
		var kernelOnly []string
		for _, l := range strings.Split(text, "\n") {
			if st, ok := findStamp(l, 0); ok {
				kernelOnly = append(kernelOnly, l[st.end:])
			}
		}
		titles := func(reps []Report) []string {
			var out []string
			for _, r := range reps {
				out = append(out, r.Title)
			}
			return out
		}
		if diff := cmp.Diff(titles(feedLines(text)), titles(feedAll(strings.Join(kernelOnly, "\n")))); diff != "" {
			t.Errorf("%s: titles without timestamps differ (-with +without):\n%s", name, diff)
		}
	}
}

// BenchmarkDetector measures the detector's throughput on a large console
// that mixes boot logs, user space and every kind of report of
// testdata/crashes, fed line by line as Stream feeds it.
func BenchmarkDetector(b *testing.B) {
	files, err := filepath.Glob(filepath.Join("testdata", "crashes", "*.txt"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no testdata: %v", err)
	}
	var all strings.Builder
	for all.Len() < 4<<20 {
		for _, name := range files {
			text, err := os.ReadFile(name)
			if err != nil {
				b.Fatal(err)
			}
			all.Write(text)
		}
	}
	lines := strings.Split(all.String(), "\n")
	b.SetBytes(int64(all.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d := NewDetector(WithDuplicates())
		for _, l := range lines {
			d.Feed(l)
		}
		d.Flush()
	}
	b.ReportMetric(float64(len(lines)), "lines/op")
}
