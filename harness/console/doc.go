// Package console turns the serial console of a QEMU guest into evidence and
// verdicts.
//
// A [Stream] is an io.WriteCloser that QEMU's console output is copied into.
// It splits the bytes into lines, writes every line with a relative
// timestamp to an evidence file, forwards it (escape sequences removed) to a
// log function such as testing.T.Logf, keeps the last lines for failure
// messages, and feeds a [Detector].
//
// A [Detector] recognises kernel crash reports in a stream of console lines,
// one line at a time. Each recognised crash becomes one [Report] with a
// normalised title — the same bug gives the same title on every run, kernel
// build and architecture — and the console lines around it.
//
// # What is recognised
//
// Kernels 4.x to 7.x on x86-64, arm64 and riscv64:
//
//   - sanitizers: KASAN, KMSAN ("BUG: KMSAN: uninit-value in f"), KCSAN
//     ("BUG: KCSAN: data-race in f / g", also with an unknown other side),
//     UBSAN;
//   - WARN(): "WARNING: CPU: 0 PID: 1 at file:line f+0x1/0x2" and, since
//     6.19, "WARNING: file:line at f+0x1/0x2, CPU#0: comm/1"; the frame
//     unwinder's "WARNING: kernel stack regs ... has bad 'bp' value";
//   - faults: x86's "BUG: kernel NULL pointer dereference", "BUG: unable to
//     handle page fault for address" (and the 4.x "unable to handle kernel
//     ... at"), general protection faults (non-canonical and
//     segment-related), divide errors and the other traps, "kernel BUG at";
//     arm64's and riscv's "Unable to handle kernel <what> at virtual
//     address", arm64's "Unhandled fault" and "Internal error: ...";
//   - stack overflows: "BUG: [TASK ]stack guard page was hit", "kernel stack
//     overflow (double-fault)", arm64/riscv "Insufficient stack space", the
//     stack protector's panic;
//   - lockdep in all its spellings ("WARNING: x", "[ INFO: x ]", "[ BUG: x ]",
//     "BUG: x"): circular and recursive locking, irq inversions, inconsistent
//     lock state, suspicious RCU usage, bad unlock balance, held lock freed,
//     invalid wait context, "INFO: trying to register non-static key";
//   - hangs: hung tasks (also "blocked in I/O wait"), RCU stalls, soft and
//     hard lockups (with "watchdog: " or the older "NMI watchdog: " prefix),
//     workqueue lockups;
//   - other BUG: messages, panics, leaked net devices, kmemleak reports.
//
// # Titles and culprits
//
// Titles name the kind of report as the kernel (and syzbot) names it —
// "KASAN: use-after-free Read in f", "WARNING in f", "possible deadlock in
// f", "INFO: task hung in f", "BUG: unable to handle kernel paging request
// in f" — followed by the function to blame, without offset or compiler
// clone suffix. The function is taken from the header where it names one,
// else from the instruction pointer of the register dump (RIP:, IP:, pc :,
// epc :, PC is at), else from the first stack trace after the header,
// passing over the machinery that reports, traps, sanitizes, locks, sleeps,
// allocates or prints (genericFrames in frames.go). The string and copy
// helpers (memcpy, strcpy, ...) are passed over only in sanitizer reports,
// which report accesses on their callers' behalf. Frames the unwinder marks
// unreliable ("? f") count only when no frame of the trace is reliable, or,
// in a stall, for the function the timer interrupt found running. An RCU
// stall or lockup thus blames the stalled CPU's code, a hung task its own
// stack, never the NMI backtrace or watchdog helpers.
//
// # Consoles as they arrive
//
// A line in which a second printk timestamp begins (two CPUs interleaving, or
// a lost line end) is cut before it into the messages of separate printk
// calls. Once a console shows timestamps, lines without one are user space;
// a header without timestamp is still taken for the kernel's if lines only a
// crash report prints (a register dump, a stack frame, "Modules linked in:",
// ...) follow at once. Headers may be indented. With CONFIG_PRINTK_CALLER,
// lines of other tasks ("[  T233]") that interleave with a report are kept
// for context but not read for its title.
//
// # Corrupted reports
//
// A report is Corrupted when the function to blame cannot be found because
// the report is incomplete: it has no stack trace and no instruction
// pointer, or it was cut short (the console ended, or the next crash began,
// while its dump was still printing, or printk dropped messages) before one
// came. A report that consists of nothing but the panic that ends another
// ("Kernel panic - not syncing: Fatal exception") is Corrupted too: its
// real header was lost. A corrupted report's title names its kind only,
// followed by " (corrupted)", e.g. "BUG: unable to handle kernel paging
// request (corrupted)", so that it never passes for a known bug; Func is
// empty.
//
// What the detector knows about report formats lives in tables (kinds.go,
// frames.go and the line patterns of detector.go): one entry per family of
// report with the header that starts it, the template of its title and where
// the function to blame is found. Golden files in testdata/crashes pin the
// behaviour down, and every table entry must be exercised by one; run
//
//	go test ./harness/console -run TestGolden -update
//
// after changing the tables and review the diff of the .golden files.
package console
