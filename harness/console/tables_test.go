package console

import (
	"regexp"
	"strings"
	"testing"
)

// inheritedFrames and inheritedLines are entries of genericFrames,
// kindFrames and reportLinePatterns that were in the tables before the
// goldens were required to exercise every entry, and that no golden
// console exercises yet. A golden that does should take its entry off the
// list; new entries come with a golden.
var inheritedFrames = []string{
	`__dump_stack`, `show_regs`, `__show_regs`, `show_trace_log_lvl`, `show_regs_if_kernel`,
	`print_modules`, `__warn_printk`, `__report_bug`, `vpanic`, `oops_end`, `no_context`,
	`kernelmode_fixup_or_oops`, `__bad_area_nosemaphore`, `bad_area_nosemaphore`,
	`do_kern_addr_fault`, `handle_page_fault`, `spurious_kernel_fault`, `fixup_exception`,
	`ex_handler_\w+`, `check_region_inline`, `describe_object\w*`, `start_report`, `end_report`,
	`kfence_\w+`, `__kfence_\w+`, `ubsan_\w+`, `__might_fault`, `might_fault`, `__cant_sleep`,
	`__cant_migrate`, `schedule_debug`, `debug_smp_processor_id`, `__this_cpu_preempt_check`,
	`lock_acquired`, `lock_contended`, `__lockdep_\w+`, `check_prev_add`, `check_prevs_add`,
	`check_deadlock`, `validate_chain`, `mark_usage`, `debug_check_no_locks_held`, `rcu_lock_acquire`,
	`rcu_lock_release`, `rcu_read_lock\w*`, `rcu_read_unlock\w*`, `do_raw_\w+`, `mutex_unlock\w*`,
	`__mutex_unlock\w*`, `down_\w+`, `up`, `up_\w+`, `__up\w*`, `rwsem_\w+`, `__rwsem_\w+`,
	`preempt_schedule\w*`, `__cond_resched`, `wait_for_common\w*`, `do_wait_for_common`,
	`__flush_work`, `flush_work`, `synchronize_rcu\w*`, `synchronize_srcu\w*`, `__wait_rcu_gp`,
	`wait_rcu_gp`, `kmem_cache_free`, `kvfree`, `kfree_sensitive`, `kzalloc`, `kcalloc`, `krealloc`,
	`kmemdup\w*`, `kstrdup\w*`, `kvmalloc\w*`, `vmalloc\w*`, `__vmalloc\w*`, `vzalloc`, `__slab_\w+`,
	`___slab_\w+`, `alloc_pages\w*`, `__alloc_pages\w*`, `__alloc_skb`, `alloc_skb\w*`,
	`__netdev_alloc_skb`, `kmalloc_reserve`, `__fortify_\w+`, `fortify_panic`, `__check_object_size`,
	`check_heap_object`, `usercopy_abort`, `__refcount_\w+`, `__list_add_valid\w*`, `debug_object\w*`,
	`debug_print_object`, `hrtimer_run_queues`, `__memcpy\w*`, `memmove`, `__memmove`, `memset\w*`,
	`__memset`, `memcmp`, `strlen`, `strnlen`, `strcpy`, `strncpy`, `strscpy`, `strcmp`, `strncmp`,
}

var inheritedLines = []string{
	`PKRU: `, `Stack:`, `</?#?[A-Z]{2,8}>`, `\[ cut here \]`, `P4D `, `PUD `, `PMD `, `PTE `,
	`Free of addr `, `Last potentially related work creation:`, `Second to last potentially related`,
	`head: `, `load of value `, `signed integer overflow`, `division by zero`,
	`\S+ address \S+ with insufficient space`, `Possible unsafe locking scenario`,
	`Possible interrupt unsafe locking scenario`, `\*\*\* DEADLOCK \*\*\*`,
	`and this task is already holding`, `Chain exists of:`, `Showing all locks held`,
	`list_(?:add|del) corruption`, `ODEBUG: `, `stack segment: `,
}

// goldenLines returns the messages of all console lines of testdata/crashes.
func goldenLines(t *testing.T) []consoleLine {
	t.Helper()
	var out []consoleLine
	for _, file := range crashFiles(t) {
		for _, raw := range strings.Split(readFile(t, file), "\n") {
			out = append(out, parseLines(raw)...)
		}
	}
	return out
}

// TestSkipListExercised checks that every entry of the lists of frames
// never to blame names a function that occurs in a frame or instruction
// pointer of some golden console.
func TestSkipListExercised(t *testing.T) {
	seen := map[string]bool{}
	for _, l := range goldenLines(t) {
		text := strings.TrimPrefix(l.text, "kmemleak: ")
		if fn, _, ok := parseFrame(text); ok {
			seen[fn] = true
		}
		if m := ipLine.FindStringSubmatch(text); m != nil {
			seen[cleanFunc(m[1])] = true
		}
	}
	lists := map[string][]string{"genericFrames": genericFrames}
	for name, l := range kindFrames {
		lists["kindFrames["+name+"]"] = l
	}
	inherited := listed(t, inheritedFrames, lists)
	for name, list := range lists {
		for _, pat := range list {
			re := regexp.MustCompile(`^(?:` + pat + `)$`)
			found := false
			for fn := range seen {
				if re.MatchString(fn) {
					found = true
					break
				}
			}
			switch {
			case !found && !inherited[pat]:
				t.Errorf("%s: no frame of testdata/crashes matches %s", name, pat)
			case found && inherited[pat]:
				t.Errorf("%s: %s is exercised now; take it off inheritedFrames", name, pat)
			}
		}
	}
}

// listed returns the entries of list as a set, and checks that each is in
// one of the tables.
func listed(t *testing.T, list []string, tables map[string][]string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, pat := range list {
		set[pat] = true
	}
	for _, table := range tables {
		for _, pat := range table {
			delete(set, pat)
		}
	}
	for pat := range set {
		t.Errorf("inherited entry %s is in no table", pat)
	}
	out := map[string]bool{}
	for _, pat := range list {
		out[pat] = true
	}
	return out
}

// TestReportLinesExercised checks that every pattern of the lines reports
// are made of matches a kernel line of some golden console.
func TestReportLinesExercised(t *testing.T) {
	lines := goldenLines(t)
	for _, pat := range strongLinePatterns {
		re := regexp.MustCompile(`^(?:` + pat + `)`)
		found := false
		for _, l := range lines {
			if re.MatchString(strings.TrimLeft(l.text, " \t")) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no line of testdata/crashes matches strong line %s", pat)
		}
	}
	inherited := listed(t, inheritedLines, map[string][]string{"reportLinePatterns": reportLinePatterns})
	for _, pat := range reportLinePatterns {
		re := regexp.MustCompile(`^(?:` + pat + `)`)
		found := false
		for _, l := range lines {
			if re.MatchString(l.text) {
				found = true
				break
			}
		}
		switch {
		case !found && !inherited[pat]:
			t.Errorf("no line of testdata/crashes matches %s", pat)
		case found && inherited[pat]:
			t.Errorf("%s is exercised now; take it off inheritedLines", pat)
		}
	}
}

// TestIndexesMatchUnion checks the first-byte indexes of prefilter.go
// against the plain unions of the patterns they index, on every line and
// every frame of the golden consoles.
func TestIndexesMatchUnion(t *testing.T) {
	union := func(patterns []string, end string) *regexp.Regexp {
		return regexp.MustCompile(`^(?:` + strings.Join(patterns, "|") + `)` + end)
	}
	reportUnion, strongUnion := union(reportLinePatterns, ""), union(strongLinePatterns, "")
	genericUnion := union(genericFrames, "$")
	for _, l := range goldenLines(t) {
		texts := []string{l.text, headerText(l.text), ""}
		if fn, _, ok := parseFrame(l.text); ok {
			texts = append(texts, fn)
		}
		for _, text := range texts {
			if got, want := reportLines.MatchString(text), reportUnion.MatchString(text); got != want {
				t.Errorf("reportLines(%q) = %v, union says %v", text, got, want)
			}
			if got, want := strongLines.MatchString(text), strongUnion.MatchString(text); got != want {
				t.Errorf("strongLines(%q) = %v, union says %v", text, got, want)
			}
			if got, want := genericFrame.MatchString(text), genericUnion.MatchString(text); got != want {
				t.Errorf("genericFrame(%q) = %v, union says %v", text, got, want)
			}
			var want *crashKind
			for _, k := range kinds {
				if k.header.MatchString(headerText(text)) {
					want = k
					break
				}
			}
			if got, _ := match(text); got != want {
				t.Errorf("match(%q) = %v, want %v", text, got, want)
			}
		}
	}
}
