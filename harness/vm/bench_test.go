package vm_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"layer45/harness/vm"
)

// BenchmarkBootToAgentReady boots guests one after another and reports the
// median time from QEMU start to the agent's hello (design target: 4 s wall
// for the stock kernel under TCG). Run with -benchtime Nx for N boots.
func BenchmarkBootToAgentReady(b *testing.B) {
	env := vm.RequireGuests(b)
	ev := vm.Evidence(b)
	var times []time.Duration
	for i := 0; i < b.N; i++ {
		m, err := vm.Start(context.Background(), env, ev, nil, vm.WithName("bench"))
		if err != nil {
			b.Fatalf("%v", err)
		}
		times = append(times, m.BootTime())
		m.Close()
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	med := times[len(times)/2]
	b.ReportMetric(med.Seconds(), "s/boot(median)")
	b.Logf("boot to agent ready: median %.2fs over %d boots (%s, %s)", med.Seconds(), len(times), env.Kernel.Release, env.AccelNote)
}
