package vm

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"layer45/harness/agent"
	"layer45/harness/cache"
	"layer45/harness/console"
	"layer45/harness/link"
	"layer45/harness/qemu"
	"layer45/vmimages/agent/proto"
)

// Snapshots. Booting costs seconds under TCG; a guest saved once at agent
// ready with QEMU's migration resumes from the file in a fraction of that.
// The saved guest has no identity: it booted without host name or
// addresses, and its NICs carry fixed MACs. Each restored guest gets its
// own (host name, MACs, addresses, wall clock, reseeded randomness) from
// the agent's setup verb, so for a test it is the guest it asked for. A
// snapshot is keyed by everything QEMU must see unchanged when it resumes
// one: kernel, image, memory, vCPUs, NICs, accelerator and QEMU itself.
//
// The saved guest's RAM is a file it wrote through to (snapshotMemory), so
// the state holds only its devices (300 KB instead of 235 MB); restored
// guests map that file copy-on-write, and pay for the pages they touch
// instead of reading all of them before the guest runs.

// snapshotState, snapshotMemory and snapshotConsole are the files of a
// snapshot entry.
const (
	snapshotState   = "state"
	snapshotMemory  = "memory"
	snapshotConsole = "boot.console.txt"
	snapshotInfo    = "snapshot.json"
)

// snapshotAllowed reads $L45_SNAPSHOT: unset or 1 restores guests from
// snapshots where they can be, 0 boots every guest.
func snapshotAllowed() (bool, error) {
	switch v := os.Getenv("L45_SNAPSHOT"); v {
	case "", "1":
		return true, nil
	case "0":
		return false, nil
	default:
		return false, fmt.Errorf("L45_SNAPSHOT=%q: use 1 (restore guests from snapshots, the default) or 0 (boot every guest)", v)
	}
}

// restorable says whether this boot of m can be a restore: snapshots are
// on (or WithRestore asks), it is the guest's first boot (a reboot is a real one), and nothing
// that must be there at boot is asked for (disks, mounts, kernel
// arguments, or a cold boot).
func (m *Machine) restorable() bool {
	c := m.cfg
	return (m.env.Snapshots || c.restore) && m.boots == 1 && !c.coldBoot &&
		len(c.disks) == 0 && len(c.mounts) == 0 && len(c.kernelArgs) == 0
}

// snapshotMAC is the MAC of NIC i in every snapshot; setup replaces it.
func snapshotMAC(i int) string { return fmt.Sprintf("52:54:00:4c:34:%02x", i) }

// anonymousConfig is the QEMU configuration of a guest without identity:
// the one snapshots are saved with and restored into.
func (m *Machine) anonymousConfig(sockets []string) *qemu.Config {
	c := m.baseConfig(m.env.Image)
	for i, s := range sockets {
		c.NICs = append(c.NICs, qemu.NIC{MAC: snapshotMAC(i), Socket: s})
	}
	return c
}

var (
	qemuVersionOnce sync.Once
	qemuVersion     string
)

// snapshotKey names the snapshot for m's shape.
func (m *Machine) snapshotKey() string {
	qemuVersionOnce.Do(func() {
		out, _ := exec.Command(qemu.Binary, "--version").Output()
		qemuVersion = strings.TrimSpace(string(out))
	})
	c := m.anonymousConfig(make([]string, len(m.cfg.nics)))
	return cache.Key("snapshot-"+m.cfg.kernel.Release,
		qemuVersion, m.bootImage(), m.env.Image, string(m.env.Accel),
		strconv.Itoa(c.MemoryMiB), strconv.Itoa(c.CPUs), strconv.Itoa(len(c.NICs)),
		strings.Join(c.Append, " "), "memory in "+snapshotMemory)
}

// snapshot returns the state file for m's shape, saving one first if the
// cache has none.
func (m *Machine) snapshot(ctx context.Context) (string, error) {
	dir, err := m.env.Cache.Get(ctx, m.snapshotKey(), func(ctx context.Context, dir string) error {
		return m.saveSnapshot(ctx, dir)
	})
	if err != nil {
		return "", fmt.Errorf("snapshot: %w", err)
	}
	return filepath.Join(dir, snapshotState), nil
}

// saveSnapshot boots an anonymous guest of m's shape to agent ready and
// saves it into dir. Its NICs are plugged into throwaway hubs: QEMU will
// not start a NIC whose socket nobody listens on.
func (m *Machine) saveSnapshot(ctx context.Context, dir string) error {
	if m.logf != nil {
		m.logf(fmt.Sprintf("%s: saving a snapshot of a booted guest (%d vCPU, %d NIC) for later guests", m.Name, m.cfg.cpus, len(m.cfg.nics)))
	}
	tmp, err := os.MkdirTemp(m.tmp, "snap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var sockets []string
	for i := range m.cfg.nics {
		h, err := link.Listen(filepath.Join(tmp, fmt.Sprintf("hub%d.sock", i)), "")
		if err != nil {
			return err
		}
		defer h.Close()
		sockets = append(sockets, h.Path())
	}
	qc := m.anonymousConfig(sockets)
	qc.Name = "snapshot"
	qc.AgentSocket = filepath.Join(tmp, "agent.sock")
	qc.QMPSocket = filepath.Join(tmp, "qmp.sock")
	qc.MemoryFile, qc.MemoryShared = filepath.Join(dir, snapshotMemory), true
	conFile, err := os.Create(filepath.Join(dir, snapshotConsole))
	if err != nil {
		return err
	}
	defer conFile.Close()
	release, err := bootSlot(ctx, m.env)
	if err != nil {
		return err
	}
	defer release()
	start := time.Now()
	var crashMu sync.Mutex
	var crashes []string
	stream := console.NewStream("snapshot", console.WithFile(conFile), console.WithStart(start),
		console.WithReport(func(r console.Report) {
			crashMu.Lock()
			crashes = append(crashes, r.Title)
			crashMu.Unlock()
		}))
	defer stream.Close()
	q := qemu.Command(qc, stream)
	if err := q.Start(); err != nil {
		return err
	}
	defer q.Kill(2 * time.Second)

	bootCtx, cancel := context.WithTimeout(ctx, bootTimeout(ctx))
	defer cancel()
	a, err := m.connect(bootCtx, q, qc.AgentSocket)
	if err != nil {
		return fmt.Errorf("booting the guest to save: %w (console: %s)", err, conFile.Name())
	}
	booted := time.Since(start)
	hello := a.Hello()
	// The restored guest's agent must find no host connected, as after a
	// host that went away: it then answers whoever connects next.
	a.Close()
	crashMu.Lock()
	bad := crashes
	crashMu.Unlock()
	if len(bad) > 0 {
		return fmt.Errorf("the guest to save reported kernel crashes: %s (console: %s)", strings.Join(bad, "; "), conFile.Name())
	}
	qmp, err := qemu.DialQMP(bootCtx, qc.QMPSocket)
	if err != nil {
		return err
	}
	defer qmp.Close()
	saveStart := time.Now()
	if err := qmp.SaveState(bootCtx, filepath.Join(dir, snapshotState)); err != nil {
		return err
	}
	st, _ := os.Stat(filepath.Join(dir, snapshotState))
	info, _ := json.MarshalIndent(map[string]any{
		"release": hello.Release, "qemu": qc.CommandLine(), "boot_seconds": booted.Seconds(),
		"save_seconds": time.Since(saveStart).Seconds(), "state_bytes": st.Size(),
	}, "", "  ")
	return os.WriteFile(filepath.Join(dir, snapshotInfo), append(info, '\n'), 0o644)
}

// setupArgs is the identity a restored guest gets.
func (m *Machine) setupArgs() (proto.SetupArgs, error) {
	a := proto.SetupArgs{Hostname: m.Name, Seed: make([]byte, 64)}
	if _, err := rand.Read(a.Seed); err != nil {
		return a, err
	}
	for i, n := range m.cfg.nics {
		a.Nets = append(a.Nets, proto.NetConfig{Iface: fmt.Sprintf("eth%d", i), Addr: n.addr, MAC: macFor(m.Name, i)})
	}
	a.Time = time.Now().UnixNano()
	return a, nil
}

// setUp gives a restored guest its identity.
func (m *Machine) setUp(ctx context.Context, a *agent.Client) error {
	args, err := m.setupArgs()
	if err != nil {
		return err
	}
	_, err = a.Setup(ctx, args)
	return err
}
