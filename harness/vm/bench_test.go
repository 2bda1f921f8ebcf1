package vm_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"layer45/harness/benchjson"
	"layer45/harness/vm"
)

// BenchmarkBootToAgentReady starts guests one after another, with one and
// with two vCPUs, booted (the unpacked kernel, and the bzImage for
// comparison) and restored from a snapshot, and reports the
// median time from QEMU start to the agent ready (after setup, for a
// restore). Run with -benchtime Nx for N starts of each.
func BenchmarkBootToAgentReady(b *testing.B) {
	for _, cpus := range []int{1, 2} {
		for _, how := range []string{"boot-bzimage", "boot", "restore"} {
			b.Run(fmt.Sprintf("vcpus=%d/%s", cpus, how), func(b *testing.B) {
				env := vm.RequireGuests(b)
				ev := vm.Evidence(b)
				opts := []vm.Option{vm.WithName("bench"), vm.WithCPUs(cpus)}
				switch how {
				case "boot-bzimage":
					opts = append(opts, vm.WithBzImage())
				case "boot":
					opts = append(opts, vm.WithColdBoot())
				default:
					opts = append(opts, vm.WithRestore())
					if m, err := vm.Start(context.Background(), env, ev, nil, opts...); err == nil {
						m.Close() // the snapshot is made outside the timing
					}
				}
				var times []time.Duration
				for i := 0; i < b.N; i++ {
					m, err := vm.Start(context.Background(), env, ev, nil, opts...)
					if err != nil {
						b.Fatalf("%v", err)
					}
					if m.Restored() != (how == "restore") {
						b.Fatalf("%s: restored=%v", how, m.Restored())
					}
					times = append(times, m.BootTime())
					m.Close()
				}
				med := benchjson.Median(times)
				b.ReportMetric(med.Seconds(), "s/"+how+"(median)")
				b.Logf("%s to agent ready: median %.2fs over %d (%s, %s, %d vCPUs)", how, med.Seconds(), len(times), env.Kernel.Release, env.AccelNote, cpus)
				var samples []float64
				for _, d := range times {
					samples = append(samples, d.Seconds())
				}
				if _, err := benchjson.Record(fmt.Sprintf("start-to-agent-ready:%s:vcpus=%d:%s", env.Kernel.Release, cpus, how), benchjson.Entry{
					When:    time.Now(),
					Env:     map[string]string{"kernel": env.Kernel.Release, "accel": string(env.Accel)},
					Figures: map[string]float64{"median-s": med.Seconds()},
					Detail:  map[string]any{"samples-s": samples},
				}); err != nil {
					b.Error(err)
				}
			})
		}
	}
}
