package qemu

import (
	"strings"
	"testing"

	"layer45/vmimages/agent/proto"

	"github.com/stretchr/testify/require"
)

func TestArgsWireConsoleAgentNICsAndDisks(t *testing.T) {
	c := &Config{
		Name: "client", Kernel: "/k/vmlinuz", Initrd: "/k/initrd", MemoryMiB: 512, CPUs: 1,
		Accel: TCG, AgentSocket: "/tmp/x/agent.sock",
		Append: []string{"console=ttyS0", "l45.net=eth0,10.0.0.40/24"},
		NICs:   []NIC{{MAC: "52:54:00:00:00:01", Socket: "/tmp/x/hub.sock"}},
		Disks:  []Disk{{Path: "/tmp/x/disk.img", ReadOnly: true}},
	}
	args := strings.Join(c.Args(), " ")
	for _, want := range []string{
		"-accel tcg",
		"-no-reboot",
		"-kernel /k/vmlinuz -initrd /k/initrd",
		"-append console=ttyS0 l45.net=eth0,10.0.0.40/24",
		"-serial chardev:con",
		"socket,id=agent,path=/tmp/x/agent.sock,server=on,wait=off",
		"virtserialport,bus=vser.0,chardev=agent,name=" + proto.DefaultPort,
		"-netdev stream,id=net0,server=off,addr.type=unix,addr.path=/tmp/x/hub.sock",
		"virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01",
		"file=/tmp/x/disk.img,format=raw,if=none,id=disk0,readonly=on",
	} {
		require.Contains(t, args, want)
	}
	require.NotContains(t, args, "-cpu host", "TCG must not ask for the host CPU model")
	c.CPUs = 2
	require.Contains(t, strings.Join(c.Args(), " "), "-smp 2 -accel tcg,thread=multi", "two vCPUs under TCG run on two host threads")
	c.Accel = KVM
	require.Contains(t, strings.Join(c.Args(), " "), "-accel kvm -cpu host")
	require.NotContains(t, args, "-incoming")
	require.NotContains(t, args, "-qmp")
	c.QMPSocket, c.Incoming = "/tmp/x/qmp.sock", "/cache/snap shot/state"
	args = strings.Join(c.Args(), " ")
	require.Contains(t, args, "-qmp unix:/tmp/x/qmp.sock,server=on,wait=off")
	require.Contains(t, args, "-incoming defer", "QMP.Resume loads the state")
	require.Contains(t, args, "-machine q35 ")
	require.NotContains(t, args, "memory-backend")
	c.MemoryFile = "/cache/snap/memory"
	args = strings.Join(c.Args(), " ")
	require.Contains(t, args, "-machine q35,memory-backend=ram -m 512 ")
	require.Contains(t, args, "-object memory-backend-file,id=ram,size=512M,mem-path=/cache/snap/memory,share=off", "a restored guest's writes stay its own")
	c.MemoryShared, c.MemoryFile = true, "/cache/a,b/memory"
	require.Contains(t, strings.Join(c.Args(), " "), "mem-path=/cache/a,,b/memory,share=on", "a guest to save writes its memory to the file; QEMU's options double commas")
}

func TestCommandLineQuotesForTheShell(t *testing.T) {
	c := &Config{Name: "a b", Kernel: "k", Initrd: "i", MemoryMiB: 1, CPUs: 1, Accel: TCG,
		Append: []string{"x=1", "it's"}}
	cl := c.CommandLine()
	require.True(t, strings.HasPrefix(cl, Binary+" -name 'a b' "))
	require.Contains(t, cl, `-append 'x=1 it'\''s'`)
}
