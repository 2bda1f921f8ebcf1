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
	env := &Env{Kernel: k, BootImage: "/k/vmlinux", Image: "/k/initramfs.cpio", Accel: qemu.TCG}
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
	qc := m.bootConfig()

	require.Equal(t, "client2", qc.Name)
	require.Equal(t, 512, qc.MemoryMiB)
	require.Equal(t, 2, qc.CPUs)
	require.Equal(t, "/k/vmlinux", qc.Kernel, "the unpacked kernel boots")
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
	WithBzImage()(&m.cfg)
	require.Equal(t, "/k/vmlinuz", m.bootConfig().Kernel, "WithBzImage boots the bzImage")
	require.False(t, m.restorable(), "a bzImage boot is a cold boot")
}

// TestSnapshotShape: which guests are restored, and that a restored guest's
// QEMU differs from the saved one only where QEMU allows (host sockets),
// so guests differing only in identity share one snapshot.
func TestSnapshotShape(t *testing.T) {
	hub, err := link.Listen(t.TempDir()+"/hub.sock", "")
	require.NoError(t, err)
	defer hub.Close()
	lan := &Link{hub: hub}
	k := &kernels.Kernel{Release: "6.1.0-test", Image: "/k/vmlinuz"}
	env := &Env{Kernel: k, Image: "/k/initramfs.cpio", Accel: qemu.TCG, Snapshots: true}
	machine := func(opts ...Option) *Machine {
		cfg := config{name: "guest", kernel: k, memoryMiB: 1024, cpus: 1}
		for _, o := range opts {
			o(&cfg)
		}
		return &Machine{Name: cfg.name, env: env, cfg: cfg, tmp: "/tmp/l45-vm-" + cfg.name, boots: 1}
	}
	server := machine(WithName("server"), WithNIC(lan, "10.0.0.20/24"))
	client := machine(WithName("client"), WithNIC(lan, "10.0.0.40/24"))
	require.True(t, server.restorable())
	require.Equal(t, server.snapshotKey(), client.snapshotKey(), "guests differing in identity only must share a snapshot")

	saved := server.anonymousConfig([]string{"/tmp/snap/hub0.sock"})
	restored := client.restoreConfig("/cache/snap/state")
	require.Equal(t, "/cache/snap/state", restored.Incoming)
	require.Equal(t, "/cache/snap/memory", restored.MemoryFile, "the saved RAM is the snapshot's memory file")
	require.False(t, restored.MemoryShared, "a restored guest must not write into the snapshot")
	require.NotEmpty(t, restored.QMPSocket, "the state is loaded over QMP")
	require.Equal(t, hub.Path(), restored.NICs[0].Socket, "the restored guest is plugged into its own link")
	require.Equal(t, saved.Append, restored.Append)
	require.Equal(t, saved.NICs[0].MAC, restored.NICs[0].MAC, "QEMU must see the saved MAC; setup changes it in the guest")
	require.NotContains(t, strings.Join(restored.Append, " "), "l45.", "a snapshot has no identity on its command line")
	args, err := client.setupArgs()
	require.NoError(t, err)
	require.Equal(t, "client", args.Hostname)
	require.Equal(t, macFor("client", 0), args.Nets[0].MAC)
	require.Equal(t, "10.0.0.40/24", args.Nets[0].Addr)
	other, _ := client.setupArgs()
	require.NotEqual(t, args.Seed, other.Seed, "each restore gets its own randomness")

	for name, m := range map[string]*Machine{
		"two vCPUs": machine(WithCPUs(2), WithNIC(lan, "10.0.0.20/24")),
		"no NIC":    machine(),
		"memory":    machine(WithMemory(512), WithNIC(lan, "10.0.0.20/24")),
	} {
		require.NotEqual(t, server.snapshotKey(), m.snapshotKey(), name+" needs its own snapshot")
	}
	for name, m := range map[string]*Machine{
		"disk":        machine(WithDisk("/d/disk.img", false)),
		"mount":       machine(WithMount("/dev/vda", "/x", "ext4")),
		"kernel args": machine(WithKernelArgs("l45.debug=1")),
		"cold boot":   machine(WithColdBoot()),
	} {
		require.False(t, m.restorable(), name+" must boot")
	}
	server.boots = 2
	require.False(t, server.restorable(), "a reboot is a real boot")
	env.Snapshots = false
	client.boots = 1
	require.False(t, client.restorable(), "L45_SNAPSHOT=0")
	require.True(t, machine(WithRestore(), WithNIC(lan, "10.0.0.40/24")).restorable(), "WithRestore overrides L45_SNAPSHOT=0")
}

func TestSnapshotSetting(t *testing.T) {
	for v, want := range map[string]bool{"": true, "1": true, "0": false} {
		t.Setenv("L45_SNAPSHOT", v)
		got, err := snapshotAllowed()
		require.NoError(t, err)
		require.Equal(t, want, got, "L45_SNAPSHOT=%q", v)
	}
	t.Setenv("L45_SNAPSHOT", "yes")
	_, err := snapshotAllowed()
	require.ErrorContains(t, err, `L45_SNAPSHOT="yes": use 1`)
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
