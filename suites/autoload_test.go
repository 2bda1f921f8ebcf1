package suites

// R10: customization survives a reboot. The client guest has a persistent
// ext4 disk mounted at /usr/lib/modules/$(uname -r)/layer4_5 before the
// guest agent's autoload step. The test puts Layer 4.5 and the tag module
// there (tag without parameters matches every IPv4 socket: it tags what
// is sent and strips its tag from what is received), reboots the guest,
// and proves customization works with nothing loaded by hand.

import (
	"context"
	"os"
	"path"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/agent"
	"layer45/harness/vm"
	"layer45/suites/suite"
	"layer45/vmimages/guest"
	"layer45/vmimages/traffic"
)

func TestR10_AutoloadAfterReboot(t *testing.T) {
	env := vm.RequireGuests(t)
	dir := path.Join("/usr/lib/modules", env.Kernel.Release, "layer4_5")
	disk := vm.NewDisk(t, 64)
	p := &suite.Pair{Link: vm.NewLink(t, "lan")}
	p.Server = vm.Boot(t, vm.WithName("server"), vm.WithNIC(p.Link, suite.ServerIP+"/24"))
	p.Client = vm.Boot(t, vm.WithName("client"), vm.WithNIC(p.Link, suite.ClientIP+"/24"),
		vm.WithDisk(disk, false), vm.WithMount("/dev/vda", dir, "ext4"))
	p.Mods = vm.RequireModules(t, p.Client)
	m := p.Client
	require.Equal(t, env.Kernel.Release, m.Hello().Release, "the mount point names the running kernel")

	const port = 7601
	echo := p.StartEcho(t, "udp", port, echoPrefix)

	// First boot: the disk is mounted and empty, nothing is customized.
	mounted, note, ok := findStep(m.Hello(), "disk", dir)
	require.True(t, ok && mounted, "mount of the persistent disk: %s (%+v)", note, m.Hello().Boot)
	_, _, ok = findStep(m.Hello(), "autoload", "tag")
	require.False(t, ok)
	r := udpOnce(t, p, traffic.Client{Proto: "udp", To: echo.Addr(), Messages: []string{"before"}})
	require.Equal(t, []string{"P:before"}, r.Received())

	files := map[string]string{path.Join(dir, "customizations", "tag.ko"): "tag"}
	if !m.Kernel().Layer45Builtin {
		files[path.Join(dir, "layer4_5.ko")] = guest.CoreModule
	}
	for file, name := range files {
		host, err := p.Mods.Path(name)
		require.NoError(t, err)
		data, err := os.ReadFile(host)
		require.NoError(t, err)
		m.MustWriteFile(t, file, data, 0o644)
	}
	require.NoError(t, m.Sync(context.Background()))

	require.NoError(t, m.Reboot(context.Background()))
	hello := m.Hello()
	mounted, note, ok = findStep(hello, "disk", dir)
	require.True(t, ok && mounted, "mount after the reboot: %s", note)
	step, note, ok := findStep(hello, "autoload", "tag")
	require.True(t, ok, "the agent's boot steps: %+v", hello.Boot)
	require.True(t, step, "autoload of tag failed: %s", note)
	if !m.Kernel().Layer45Builtin {
		step, note, ok = findStep(hello, "autoload", guest.CoreModule)
		require.True(t, ok && step, "autoload of Layer 4.5: %s (%+v)", note, hello.Boot)
	}

	// Layer 4.5's view: the module is installed and active, with no
	// manual load since the reboot.
	e, dep := suite.Entry(t, m, tagID)
	require.False(t, dep)
	require.Equal(t, 1, e.Activated)

	// Application and wire: UDP and TCP are tagged on the way out, and the
	// tag is stripped from the echo on the way in.
	live := suite.StartLive(t, m, traffic.Client{Proto: "udp", To: echo.Addr(), Connect: true,
		Messages: []string{"after", "again"}, Recv: true, Timeout: vm.Scale(3 * time.Second)})
	live.Ready(t)
	e, _ = suite.Entry(t, m, tagID)
	require.Equal(t, 1, e.Count, "the autoloaded module is attached to the live socket")
	rep := live.Finish(t)
	require.Equal(t, []string{"P:after", "P:again"}, rep.Received(), "the tag is stripped from the echo")
	tcpEcho := p.StartEcho(t, "tcp", port, echoPrefix)
	tr := m.MustTraffic(t, traffic.Client{Proto: "tcp", To: tcpEcho.Addr(), Messages: []string{"stream"}, Recv: true,
		Timeout: vm.Scale(3 * time.Second)})
	require.Equal(t, []string{"P:stream"}, tr.Received())

	require.Equal(t, []string{"before", "afterL45", "againL45"}, p.WaitPayloads(t, "udp", port, true, 3))
	require.Equal(t, []string{"P:before", "P:afterL45", "P:againL45"}, p.WaitPayloads(t, "udp", port, false, 3))
	require.Equal(t, []string{"streamL45"}, p.WaitPayloads(t, "tcp", port, true, 1))
	// The server has no Layer 4.5: its application reads the tag.
	require.Equal(t, []string{"streamL45"}, tcpEcho.Data(t))
}

// findStep returns the outcome of the agent's boot step for target.
func findStep(h agent.Hello, step, target string) (ok bool, note string, found bool) {
	for _, s := range h.Boot {
		if s.Step == step && (s.Target == target || path.Base(s.Target) == target+".ko") {
			return s.OK, s.Note + s.Error, true
		}
	}
	return false, "", false
}
