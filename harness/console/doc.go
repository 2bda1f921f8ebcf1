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
// one line at a time: KASAN and UBSAN reports, WARNINGs, lockdep splats,
// oopses, kernel BUGs, hung tasks, RCU stalls, soft and hard lockups,
// panics, leaked net devices and kmemleak reports. Each recognised crash
// becomes one [Report] with a normalised title — the same bug gives the same
// title on every run and every kernel build — and the console lines around
// it.
//
// What the detector knows about report formats lives in tables (see
// kinds.go and frames.go): one entry per family of report with the header
// that starts it, the template of its title and where the function to blame
// is found. Golden files in testdata/crashes pin the behaviour down; run
//
//	go test ./harness/console -run TestGolden -update
//
// after changing the tables and review the diff of the .golden files.
package console
