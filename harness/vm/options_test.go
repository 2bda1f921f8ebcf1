package vm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/kernels"
	"layer45/harness/link"
	"layer45/harness/qemu"
)

func TestOptionsBecomeQEMUConfigAndKernelArguments(t *testing.T) {
	hub, err := link.Listen(t.TempDir()+"/hub.sock", "")
	require.NoError(t, err)
	defer hub.Close()
	lan := &Link{hub: hub}
	k := &kernels.Kernel{Release: "6.1.0-test", Image: "/k/vmlinuz"}
	env := &Env{Kernel: k, Image: "/k/initramfs.cpio", Accel: qemu.TCG}
	cfg := config{name: "client", kernel: k, memoryMiB: 1024, cpus: 1}
	for _, o := range []Option{
		WithName("client2"), WithMemory(512), WithCPUs(2),
		WithNIC(lan, "10.0.0.40/24"), WithDisk("/d/disk.img", false),
		WithMount("/dev/vda", "/usr/lib/modules/x/layer4_5", "ext4"),
		WithKernelArgs("l45.debug=1"),
	} {
		o(&cfg)
	}
	m := &Machine{Name: cfg.name, env: env, cfg: cfg, tmp: "/tmp/l45-vm-x"}
	qc := m.qemuConfig(env.Image)

	require.Equal(t, "client2", qc.Name)
	require.Equal(t, 512, qc.MemoryMiB)
	require.Equal(t, 2, qc.CPUs)
	require.Equal(t, "/k/vmlinuz", qc.Kernel)
	require.Equal(t, "/tmp/l45-vm-x/agent.sock", qc.AgentSocket)
	require.Len(t, qc.NICs, 1)
	require.Equal(t, hub.Path(), qc.NICs[0].Socket)
	require.Equal(t, macFor("client2", 0), qc.NICs[0].MAC)
	require.Equal(t, []qemu.Disk{{Path: "/d/disk.img"}}, qc.Disks)
	args := strings.Join(qc.Append, " ")
	for _, want := range []string{"console=ttyS0", "panic=-1", "l45.hostname=client2",
		"l45.net=eth0,10.0.0.40/24", "l45.mount=/dev/vda:/usr/lib/modules/x/layer4_5:ext4", "l45.debug=1"} {
		require.Contains(t, args, want)
	}
}

func TestMACsAreStableLocallyAdministeredAndDistinct(t *testing.T) {
	require.Equal(t, macFor("server", 0), macFor("server", 0))
	require.NotEqual(t, macFor("server", 0), macFor("client", 0))
	require.NotEqual(t, macFor("server", 0), macFor("server", 1))
	require.True(t, strings.HasPrefix(macFor("x", 0), "52:54:"))
}

func TestDeadlinesScaleWithMeasuredSlowdownAndRespectTheContext(t *testing.T) {
	defer SetSlowdown(Slowdown())
	SetSlowdown(12.5)
	require.Equal(t, 250*time.Second, Scale(20*time.Second))
	SetSlowdown(0.3)
	require.Equal(t, 20*time.Second, Scale(20*time.Second), "never shorter than on the host")

	speedMu.Lock()
	saved := bootTimes
	bootTimes = nil
	speedMu.Unlock()
	defer func() { speedMu.Lock(); bootTimes = saved; speedMu.Unlock() }()

	require.Equal(t, firstBootTimeout, bootTimeout(context.Background()), "nothing measured yet")
	for _, d := range []time.Duration{7 * time.Second, 9 * time.Second, 8 * time.Second} {
		recordBoot(d)
	}
	require.Equal(t, 8*time.Second, MedianBoot())
	require.Equal(t, 40*time.Second, bootTimeout(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	require.LessOrEqual(t, bootTimeout(ctx), 3*time.Second, "the test's deadline wins")
}
