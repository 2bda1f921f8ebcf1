package console

import (
	"regexp"
	"strings"
)

// Stack frames as x86-64 kernels print them in a "Call Trace:" block,
// "func+0x1c/0x40 [module]", with "? " in front of frames the unwinder is
// not sure about and, in older kernels and kmemleak, the address in
// "[<ffffffff81234567>]" before the symbol.
var frameLine = regexp.MustCompile(`^\s*(?:\[<[0-9a-f]+>\]\s*)?(\?\s+)?([A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[([\w-]+)\])?`)

// ripLine is the instruction pointer of a kernel-mode register dump.
// User-mode dumps ("RIP: 0033:0x7f...") carry no symbol and do not match.
var ripLine = regexp.MustCompile(`^\s*[RE]IP: (?:[0-9a-f]{4}:)?(?:\[<[0-9a-f]+>\] )?([A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+`)

// traceStart opens a block of stack frames: the call trace of a dump and
// the allocation backtrace of a kmemleak report ("backtrace (crc 1a2b):" in
// newer kernels).
var traceStart = regexp.MustCompile(`^\s*(?:Call Trace:|backtrace(?: \(crc [0-9a-f]+\))?:)\s*$`)

// traceEnd closes the current call trace.
var traceEnd = regexp.MustCompile(`^\s*</TASK>\s*$`)

// traceMarker lines sit inside a call trace without being frames.
var traceMarker = regexp.MustCompile(`^\s*</?#?[A-Z]{2,8}>\s*$|^` + registerDump + `|^Code: `)

// registerDump starts a line of a register dump: RIP, RSP, RAX, R10, FS,
// CS, CR2, DR0 (and EAX, ... of 32-bit kernels).
const registerDump = `(?:R[A-Z0-9]{1,2}|E[A-Z]{2}|[A-Z]S|CR\d|DR\d): `

// funcSuffix is what the compiler appends to clones of a function. The
// suffixes differ between builds of the same source, so titles drop them.
var funcSuffix = regexp.MustCompile(`(?:\.(?:constprop|isra|part|cold|llvm|lto_priv|localalias|specialized)(?:\.\d+)?)+$`)

// genericFrames are functions that are never the one to blame: the
// machinery that prints reports, traps into the kernel, checks memory,
// takes locks, sleeps or allocates. Looking for the culprit, frames that
// match are skipped. Each entry is a regular expression matched against the
// whole function name (without clone suffixes).
var genericFrames = []string{
	// Printing stacks and reports.
	`dump_stack(?:_lvl)?`, `__dump_stack`, `show_stack`, `show_regs`, `__show_regs`,
	`show_trace_log_lvl`, `show_regs_if_kernel`, `print_modules`,
	`__warn`, `__warn_printk`, `warn_slowpath\w*`, `report_bug`, `__report_bug`, `handle_bug`,
	`panic`, `nmi_panic`, `vpanic`, `check_panic_on_warn`,
	// Traps, faults and interrupt entry.
	`exc_\w+`, `asm_\w+`, `sysvec_\w+`, `__sysvec_\w+`, `do_trap`, `do_error_trap`,
	`die`, `__die`, `__die_body`, `die_addr`, `oops_end`, `page_fault_oops`, `no_context`,
	`kernelmode_fixup_or_oops`, `__bad_area_nosemaphore`, `bad_area_nosemaphore`,
	`do_user_addr_fault`, `do_kern_addr_fault`, `handle_page_fault`, `spurious_kernel_fault`,
	`fixup_exception`, `ex_handler_\w+`,
	// Sanitizers.
	`kasan_\w+`, `__kasan_\w+`, `____kasan_\w+`, `__asan_\w+`, `check_region_inline`,
	`print_report`, `print_address_description`, `describe_object\w*`, `start_report`, `end_report`,
	`kfence_\w+`, `__kfence_\w+`, `kmsan_\w+`, `__msan_\w+`,
	`ubsan_\w+`, `__ubsan_\w+`,
	// Context checks.
	`__might_sleep`, `___might_sleep`, `__might_resched`, `__might_fault`, `might_fault`,
	`__cant_sleep`, `__cant_migrate`, `__schedule_bug`, `schedule_debug`,
	`check_preemption_disabled`, `debug_smp_processor_id`, `__this_cpu_preempt_check`,
	// Locking and lockdep.
	`lock_acquire`, `lock_release`, `lock_acquired`, `lock_contended`, `__lock_acquire`,
	`lockdep_\w+`, `__lockdep_\w+`, `check_noncircular`, `check_prev_add`, `check_prevs_add`,
	`check_deadlock`, `validate_chain`, `print_\w+_bug`, `mark_lock`, `mark_usage`,
	`debug_check_no_locks_held`, `rcu_lock_acquire`, `rcu_lock_release`,
	`rcu_read_lock\w*`, `rcu_read_unlock\w*`,
	`_raw_\w+`, `do_raw_\w+`, `\w*queued_\w*spin_lock_slowpath`,
	`__mutex_lock\w*`, `mutex_lock\w*`, `mutex_unlock\w*`, `__mutex_unlock\w*`,
	`down`, `down_\w+`, `__down\w*`, `up`, `up_\w+`, `__up\w*`, `rwsem_\w+`, `__rwsem_\w+`,
	// Scheduling and waiting.
	`__schedule`, `schedule`, `schedule_\w+`, `preempt_schedule\w*`, `__cond_resched`,
	`io_schedule\w*`, `__wait_for_common`, `wait_for_common\w*`, `do_wait_for_common`,
	`wait_for_completion\w*`, `msleep\w*`, `usleep_range\w*`, `__flush_work`, `flush_work`,
	`synchronize_rcu\w*`, `synchronize_srcu\w*`, `__synchronize_srcu`, `__wait_rcu_gp`, `wait_rcu_gp`,
	// Allocation and freeing.
	`kmalloc\w*`, `__kmalloc\w*`, `kmem_cache_alloc\w*`, `__kmem_cache_alloc\w*`,
	`kmem_cache_free`, `__kmem_cache_free`, `kfree`, `kvfree`, `kfree_sensitive`,
	`kzalloc`, `kcalloc`, `krealloc`, `kmemdup\w*`, `kstrdup\w*`, `kvmalloc\w*`,
	`vmalloc\w*`, `__vmalloc\w*`, `vzalloc`, `slab_\w+`, `__slab_\w+`, `___slab_\w+`,
	`kmemleak_\w+`, `alloc_pages\w*`, `__alloc_pages\w*`,
	`__alloc_skb`, `alloc_skb\w*`, `__netdev_alloc_skb`, `kmalloc_reserve`,
	// String and copy helpers.
	`memcpy\w*`, `__memcpy\w*`, `memmove`, `__memmove`, `memset\w*`, `__memset`, `memcmp`,
	`strlen`, `strnlen`, `strcpy`, `strncpy`, `strscpy`, `strcmp`, `strncmp`,
	`__fortify_\w+`, `fortify_panic`, `__check_object_size`, `check_heap_object`,
	`usercopy_abort`, `_?copy_\w+_user\w*`, `__stack_chk_fail`,
	// Debug checks that report on behalf of their caller.
	`refcount_warn_saturate`, `__refcount_\w+`, `refcount_\w+`,
	`__list_add_valid\w*`, `__list_del_entry_valid\w*`, `debug_object\w*`, `debug_print_object`,
	// Timer and NMI plumbing of the watchdogs and the RCU stall detector.
	`watchdog_timer_fn`, `softlockup_fn`, `watchdog_overflow_callback`,
	`__hrtimer_run_queues`, `hrtimer_interrupt`, `hrtimer_run_queues`, `update_process_times`,
	`tick_\w+`, `rcu_sched_clock_irq`, `rcu_dump_cpu_stacks`, `rcu_pending`,
	`print_cpu_stall\w*`, `check_cpu_stall`, `nmi_cpu_backtrace\w*`,
	`nmi_trigger_cpumask_backtrace`, `arch_trigger_cpumask_backtrace`, `nmi_handle`,
	`default_do_nmi`, `end_repeat_nmi`,
}

var genericFrame = regexp.MustCompile(`^(?:` + strings.Join(genericFrames, `|`) + `)$`)

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

// ripFunc returns the first non-generic function named by a kernel-mode
// instruction pointer in lines.
func ripFunc(lines []consoleLine) string {
	for _, l := range lines {
		if m := ripLine.FindStringSubmatch(l.text); m != nil {
			if fn := cleanFunc(m[1]); !isGeneric(fn) {
				return fn
			}
			// The first RIP is the faulting one; if it is generic, the
			// call trace says more than a later RIP would.
			return ""
		}
	}
	return ""
}

// traceFunc returns the first reliable, non-generic frame of the first
// stack trace in lines.
func traceFunc(lines []consoleLine) string {
	in := false
	for _, l := range lines {
		text := strings.TrimPrefix(l.text, "kmemleak: ")
		if !in {
			in = traceStart.MatchString(text)
			continue
		}
		if traceEnd.MatchString(text) {
			return ""
		}
		fn, unreliable, ok := parseFrame(text)
		switch {
		case ok && !unreliable && !isGeneric(fn):
			return fn
		case ok || traceMarker.MatchString(text):
		case strings.TrimSpace(text) == "":
		default:
			// The block ended without a frame to blame.
			return ""
		}
	}
	return ""
}
