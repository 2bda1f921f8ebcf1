package main

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"layer45/harness/benchjson"
)

// BenchmarkE2ESnapshots times `l45 e2e` (the end-to-end suites and the
// verdict) with guests restored from snapshots and with every guest booted
// (L45_SNAPSHOT=0), side by side in one run, and prints the ratio. The
// snapshots are made before the timing starts. Run with -benchtime 1x.
func BenchmarkE2ESnapshots(b *testing.B) {
	if testing.Short() {
		b.Skip("boots guests")
	}
	run := func(setting string) time.Duration {
		cmd := exec.Command(l45Bin, "e2e")
		cmd.Env = append(os.Environ(), "L45_SNAPSHOT="+setting)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("L45_SNAPSHOT=%s l45 e2e: %v\n%s", setting, err, out)
		}
		return time.Since(start)
	}
	run("1") // makes the snapshots, warms every cache
	times := map[string][]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, setting := range []string{"1", "0"} {
			times[setting] = append(times[setting], run(setting))
		}
	}
	on, off := benchjson.Median(times["1"]), benchjson.Median(times["0"])
	b.ReportMetric(on.Seconds(), "s/e2e-snapshots")
	b.ReportMetric(off.Seconds(), "s/e2e-booted")
	b.Logf("l45 e2e: %.0fs with snapshots, %.0fs booting every guest (%.2fx)", on.Seconds(), off.Seconds(), off.Seconds()/on.Seconds())
	if _, err := benchjson.Record("e2e-wall-time", benchjson.Entry{
		When:    time.Now(),
		Env:     map[string]string{"kernel": os.Getenv("L45_KERNEL")},
		Figures: map[string]float64{"snapshots-s": on.Seconds(), "booted-s": off.Seconds()},
		Detail:  map[string]any{"runs": fmt.Sprint(b.N)},
	}); err != nil {
		b.Error(err)
	}
}
