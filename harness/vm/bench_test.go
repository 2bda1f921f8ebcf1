package vm_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"layer45/harness/vm"
)

// BenchmarkBootToAgentReady boots guests one after another, with one and
// with two vCPUs, and reports the median time from QEMU start to the
// agent's hello. Run with -benchtime Nx for N boots of each.
func BenchmarkBootToAgentReady(b *testing.B) {
	for _, cpus := range []int{1, 2} {
		b.Run(fmt.Sprintf("vcpus=%d", cpus), func(b *testing.B) {
			env := vm.RequireGuests(b)
			ev := vm.Evidence(b)
			var times []time.Duration
			for i := 0; i < b.N; i++ {
				m, err := vm.Start(context.Background(), env, ev, nil, vm.WithName("bench"), vm.WithCPUs(cpus))
				if err != nil {
					b.Fatalf("%v", err)
				}
				times = append(times, m.BootTime())
				m.Close()
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			med := times[len(times)/2]
			b.ReportMetric(med.Seconds(), "s/boot(median)")
			b.Logf("boot to agent ready: median %.2fs over %d boots (%s, %s, %d vCPUs)", med.Seconds(), len(times), env.Kernel.Release, env.AccelNote, cpus)
		})
	}
}
