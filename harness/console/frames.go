package console

import (
	"regexp"
	"strings"
)

// Stack frames as kernels print them in a "Call Trace:" block,
// "func+0x1c/0x40 [module]", with "? " in front of frames the x86 unwinder
// is not sure about and, in older kernels, kmemleak and riscv, the address
// in "[<ffffffff81234567>]" before the symbol.
var frameLine = regexp.MustCompile(`^\s*(?:\[<[0-9a-f]+>\]\s*)?(\?\s+)?([A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[([\w-]+)\])?`)

// ipLine is the instruction pointer of a kernel-mode register dump:
// "RIP: 0010:func+0x1c/0x40" (x86-64), "RIP: 0010:[<ffffffff81234567>]
// [<ffffffff81234567>] func+0x1c/0x40" and "IP: func+0x1c/0x40" (4.x),
// "RIP  [<ffffffff81234567>] func+0x1c/0x40" (the summary at the end of 4.x
// oopses), "EIP: func+0x1c/0x40" (i386), "pc : func+0x1c/0x40" (arm64),
// "epc : func+0x1c/0x40" (riscv), "PC is at func+0x1c/0x40" (arm64 until
// 4.x). User-mode dumps ("RIP: 0033:0x7f...", "pc : 0000ffff8a3b1c2c")
// carry no symbol and do not match.
var ipLine = regexp.MustCompile(`^\s*(?:[RE]?IP:?\s+(?:[0-9a-f]{4}:)?(?:\[<[0-9a-f]+>\]\s+){0,2}|e?pc\s*:\s+|PC is at\s+)([A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+`)

// traceStart opens a block of stack frames: the call trace of a dump
// ("Call trace:" on arm64), the allocation backtrace of a kmemleak report
// ("backtrace (crc 1a2b):" in newer kernels) and the two accesses of a
// KCSAN report ("write to 0x... of 8 bytes by task 231 on cpu 0:"). A
// riscv oops prints its frames right after the register dump, whose last
// line is "status: ... badaddr: ... cause: ...".
var traceStart = regexp.MustCompile(`^\s*(?:Call [Tt]race:|backtrace(?: \(crc [0-9a-f]+\))?:|` +
	`(?:race at unknown origin, with )?(?:read|write)(?: \(marked\))?(?:-write)? to 0x[0-9a-f]+ of \d+ bytes by (?:task \d+|interrupt) on cpu \d+:|` +
	`status: [0-9a-f]+ badaddr: [0-9a-f]+ cause: [0-9a-f]+)\s*$`)

// traceEnd closes the current call trace.
var traceEnd = regexp.MustCompile(`^\s*</TASK>\s*$`)

// traceMarker lines sit inside a call trace without being frames: the
// context markers of x86 (<IRQ>, </IRQ>, <EOI>, <NMI>, <<EOE>>, <#DF>),
// addresses the unwinder has no symbol for ("? 0xffffffffa0008000", in a
// module's init text), register dumps at an interrupt boundary, and
// arm64's exception stacks of 4.x.
var traceMarker = regexp.MustCompile(`^\s*(?:</?#?[A-Z]{2,8}>|<<EOE>>|(?:\? )?0x[0-9a-f]+)\s*$|^` + registerDump + `|^Code: |` +
	`^Exception stack\(|^[0-9a-f]{4}:(?: +[0-9a-f]{16})+\s*$`)

// registerDump starts a line of a register dump: RIP, RSP, RAX, R10, FS,
// CS, CR2, DR0 (and EAX, ... of 32-bit kernels).
const registerDump = `(?:R[A-Z0-9]{1,2}|E[A-Z]{2}|[A-Z]S|CR\d|DR\d): `

// irqEntry are the frames and markers where a trace crosses from the
// interrupt that found a stalled CPU into the code it interrupted.
var irqEntry = regexp.MustCompile(`^\s*(?:<EOI>|</IRQ>|<<EOE>>)\s*$`)
var irqEntryFrame = regexp.MustCompile(`^(?:asm_sysvec_apic_timer_interrupt|apic_timer_interrupt)$`)

// funcSuffix is what the compiler appends to clones of a function. The
// suffixes differ between builds of the same source, so titles drop them.
var funcSuffix = regexp.MustCompile(`(?:\.(?:constprop|isra|part|cold|llvm|lto_priv|localalias|specialized)(?:\.\d+)?)+$`)

// genericFrames are functions that are never the one to blame: the
// machinery that prints reports, traps into the kernel, checks memory,
// takes locks, sleeps or allocates. Looking for the culprit, frames that
// match are skipped. Each entry is a regular expression matched against the
// whole function name (without clone suffixes).
var genericFrames = []string{
	// Printing stacks, reports and messages.
	`dump_stack(?:_lvl)?`, `__dump_stack`, `show_stack`, `show_regs`, `__show_regs`, `dump_backtrace`,
	`show_trace_log_lvl`, `show_regs_if_kernel`, `print_modules`, `walk_stackframe`,
	`__warn`, `__warn_printk`, `warn_slowpath\w*`, `report_bug`, `__report_bug`, `handle_bug`, `fixup_bug`,
	`panic`, `nmi_panic`, `vpanic`, `check_panic_on_warn`,
	`_?printk`, `vprintk\w*`, `console_(?:lock|unlock|flush_all|emit_next_record)`,
	`_*dev_v?(?:printk|emerg|alert|crit|err|warn|notice|info)\w*`, `vsnprintf`, `string`, `string_nocheck`,
	// Traps, faults and exception entry.
	`exc_\w+`, `asm_\w+`, `sysvec_\w+`, `__sysvec_\w+`, `do_trap`, `do_error_trap`, `do_invalid_op`, `invalid_op`,
	`die`, `__die`, `__die_body`, `die_addr`, `oops_end`, `page_fault_oops`, `no_context`,
	`kernelmode_fixup_or_oops`, `__bad_area_nosemaphore`, `bad_area_nosemaphore`,
	`do_user_addr_fault`, `do_kern_addr_fault`,
	`handle_page_fault`, `spurious_kernel_fault`, `fixup_exception`, `ex_handler_\w+`,
	`handle_stack_overflow`, `panic_bad_stack`, `handle_bad_stack`, `__bad_stack`,
	// Sanitizers and coverage.
	`kasan_\w+`, `__kasan_\w+`, `____kasan_\w+`, `__asan_\w+`, `check_region_inline`, `check_memory_region\w*`,
	`print_report`, `print_address_description`, `describe_object\w*`, `start_report`, `end_report`,
	`kfence_\w+`, `__kfence_\w+`, `kmsan_\w+`, `__msan_\w+`, `kcsan_\w+`, `__tsan_\w+`,
	`ubsan_\w+`, `__ubsan_\w+`, `__sanitizer_\w+`,
	// Context checks.
	`__might_sleep`, `___might_sleep`, `__might_resched`, `__might_fault`, `might_fault`,
	`__cant_sleep`, `__cant_migrate`, `__schedule_bug`, `schedule_debug`,
	`check_preemption_disabled`, `debug_smp_processor_id`, `__this_cpu_preempt_check`,
	// Locking and lockdep.
	`lock_acquire`, `lock_release`, `lock_acquired`, `lock_contended`, `__lock_acquire`,
	`lockdep_\w+`, `__lockdep_\w+`, `check_noncircular`, `check_prev_add`, `check_prevs_add`,
	`check_deadlock`, `validate_chain`, `print_\w+_bug`, `mark_lock`, `mark_usage`, `register_lock_class`,
	`debug_check_no_locks_held`, `debug_check_no_locks_freed`, `rcu_lock_acquire`, `rcu_lock_release`,
	`rcu_read_lock\w*`, `rcu_read_unlock\w*`,
	`_raw_\w+`, `do_raw_\w+`, `\w*queued_\w+_slowpath`,
	`__mutex_lock\w*`, `mutex_lock\w*`, `mutex_unlock\w*`, `__mutex_unlock\w*`,
	`down`, `down_\w+`, `__down\w*`, `up`, `up_\w+`, `__up\w*`, `rwsem_\w+`, `__rwsem_\w+`,
	// Scheduling and waiting.
	`__schedule`, `schedule`, `schedule_\w+`, `preempt_schedule\w*`, `__cond_resched`, `__switch_to_asm`,
	`io_schedule\w*`, `__wait_for_common`, `wait_for_common\w*`, `do_wait_for_common`,
	`wait_for_completion\w*`, `msleep\w*`, `usleep_range\w*`, `__flush_work`, `flush_work`,
	`synchronize_rcu\w*`, `synchronize_srcu\w*`, `__synchronize_srcu`, `__wait_rcu_gp`, `wait_rcu_gp`,
	`__wait_on_bit\w*`, `out_of_line_wait_on_bit\w*`, `bit_wait\w*`, `__wait_on_buffer`, `folio_wait_\w+`,
	// Allocation and freeing.
	`kmalloc\w*`, `__kmalloc\w*`, `kmem_cache_alloc\w*`, `__kmem_cache_alloc\w*`,
	`kmem_cache_free`, `__kmem_cache_free`, `kfree`, `kvfree`, `kfree_sensitive`,
	`kzalloc`, `kcalloc`, `krealloc`, `kmemdup\w*`, `kstrdup\w*`, `kvmalloc\w*`, `kv?asprintf\w*`,
	`vmalloc\w*`, `__vmalloc\w*`, `vzalloc`, `slab_\w+`, `__slab_\w+`, `___slab_\w+`,
	`kmemleak_\w+`, `create_object`, `alloc_pages\w*`, `__alloc_pages\w*`,
	`bad_page`, `free_(?:pcp|pages)_prepare`, `free_unref_page\w*`,
	`__alloc_skb`, `alloc_skb\w*`, `__netdev_alloc_skb`, `kmalloc_reserve`,
	// Copying to and from user space.
	`__fortify_\w+`, `fortify_panic`, `__check_object_size`, `check_heap_object`,
	`usercopy_abort`, `_?copy_\w+_user\w*`, `__stack_chk_fail`,
	// Debug checks that report on behalf of their caller.
	`refcount_warn_saturate`, `__refcount_\w+`, `refcount_\w+`,
	`__list_add_valid\w*`, `__list_del_entry_valid\w*`, `debug_object\w*`, `debug_print_object`,
	// Timer and NMI plumbing of the watchdogs and the RCU stall detector.
	`watchdog_timer_fn`, `softlockup_fn`, `watchdog_overflow_callback`,
	`__hrtimer_run_queues`, `hrtimer_interrupt`, `hrtimer_run_queues`, `update_process_times`,
	`tick_\w+`, `rcu_sched_clock_irq`, `rcu_check_callbacks`, `rcu_dump_cpu_stacks`, `rcu_pending`,
	`print_cpu_stall\w*`, `check_cpu_stall`, `nmi_cpu_backtrace\w*`,
	`nmi_trigger_cpumask_backtrace`, `arch_trigger_cpumask_backtrace`, `nmi_handle`,
	`default_do_nmi`, `do_nmi`, `end_repeat_nmi`, `sched_show_task`, `dump_cpu_task`,
	`(?:__)?perf_event_overflow`, `\w+_pmu_handle_irq`, `perf_event_nmi_handler`,
	`apic_timer_interrupt`, `smp_apic_timer_interrupt`,
	// Entry points at the bottom of every stack.
	`do_syscall_\w+`, `entry_SYSCALL\w*`, `ret_from_fork\w*`, `kthread`,
}

// kindFrames are further frames that some kinds of reports never blame.
var kindFrames = map[string][]string{
	// Sanitizers check (and report) memory accesses in the string and
	// copy helpers; the helper's caller is to blame.
	"sanitized": {
		`memcpy\w*`, `__memcpy\w*`, `memmove`, `__memmove`, `memset\w*`, `__memset`, `memcmp`,
		`strlen`, `strnlen`, `strcpy`, `strncpy`, `strscpy`, `strcmp`, `strncmp`,
	},
}

var genericFrame = newLineSet(genericFrames, true)

// cleanFunc removes compiler clone suffixes from a function name.
func cleanFunc(fn string) string {
	return funcSuffix.ReplaceAllString(fn, "")
}

// isGeneric reports whether fn (already cleaned) is never to blame.
func isGeneric(fn string) bool {
	return fn == "" || genericFrame.MatchString(fn)
}

// parseFrame returns the function of a stack frame line, whether the
// unwinder marked it unreliable, and whether the line is a frame at all.
func parseFrame(text string) (fn string, unreliable, ok bool) {
	text = strings.TrimPrefix(text, "kmemleak: ")
	m := frameLine.FindStringSubmatch(text)
	if m == nil {
		return "", false, false
	}
	return cleanFunc(m[2]), m[1] != "", true
}

// ipFunc returns the first non-generic function named by a kernel-mode
// instruction pointer in lines, and whether there was one at all.
func ipFunc(lines []consoleLine, generic func(string) bool) (string, bool) {
	for _, l := range lines {
		if m := ipLine.FindStringSubmatch(l.text); m != nil {
			if fn := cleanFunc(m[1]); !generic(fn) {
				return fn, true
			}
			// The first one is the faulting one; if it is generic, the
			// call trace says more than a later one would.
			return "", true
		}
	}
	return "", false
}

// traceFunc returns the first reliable, non-generic frame of the first
// stack trace after the header lines[0], and whether the trace had a frame
// at all. Frames right after the header make a trace too (KMSAN). For a
// stall, the frame the timer interrupt was taken in counts even when
// unreliable. A trace without any reliable frame (the guessing unwinder
// marks them all) blames its first non-generic frame.
func traceFunc(lines []consoleLine, generic func(string) bool, stall bool) (string, bool) {
	in, interrupted := false, false
	var found, reliable bool
	var guess string
	if len(lines) > 1 {
		_, _, in = parseFrame(lines[1].text)
	}
	done := func() (string, bool) {
		if reliable {
			return "", found
		}
		return guess, found
	}
	for _, l := range lines[1:] {
		text := strings.TrimPrefix(l.text, "kmemleak: ")
		if !in {
			in = traceStart.MatchString(text)
			continue
		}
		if traceEnd.MatchString(text) {
			return done()
		}
		fn, unreliable, ok := parseFrame(text)
		switch {
		case ok && (!unreliable || interrupted) && !generic(fn):
			return fn, true
		case ok:
			found = true
			reliable = reliable || !unreliable
			if guess == "" && !generic(fn) {
				guess = fn
			}
			interrupted = stall && irqEntryFrame.MatchString(fn)
		case stall && irqEntry.MatchString(text):
			interrupted = true
		case traceMarker.MatchString(text):
		case strings.TrimSpace(text) == "":
		default:
			// The block ended without a frame to blame.
			return done()
		}
	}
	return done()
}
