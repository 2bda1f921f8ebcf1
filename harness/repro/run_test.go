package repro

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"

	"layer45/harness/agent"
	"layer45/harness/console"
	"layer45/harness/infra"
	"layer45/harness/kernels"
	"layer45/harness/vm"
)

// fakePlatform hands out the pairs a test scripted, run by run.
type fakePlatform struct {
	t          *testing.T
	build      *Build
	prepareErr error
	pair       func(n int) *fakePair
	pairs      []*fakePair
}

func (p *fakePlatform) Prepare(context.Context) (*Build, error) { return p.build, p.prepareErr }

func (p *fakePlatform) NewPair(_ context.Context, n int) (Pair, error) {
	fp := p.pair(n)
	fp.dir = p.t.TempDir()
	p.pairs = append(p.pairs, fp)
	return fp, nil
}

type fakePair struct {
	dir      string
	bootErr  error
	guests   map[string]*fakeGuest
	packets  [][]byte // UDP payloads from the server's port 53, written as the link's capture
	finished bool
	closed   bool
}

func (p *fakePair) Boot(context.Context) error {
	for name := range p.guests {
		os.WriteFile(filepath.Join(p.dir, name+".console.txt"), []byte("  0.000001 Linux version 6.1.0-9-amd64\n"), 0o644)
		os.WriteFile(filepath.Join(p.dir, name+".qemu.txt"), []byte("qemu-system-x86_64 -name "+name+"\n"), 0o644)
	}
	return p.bootErr
}

func (p *fakePair) Guest(name string) Guest { return p.guests[name] }
func (p *fakePair) Dir() string             { return p.dir }

func (p *fakePair) Pcap() string {
	if p.packets == nil {
		return ""
	}
	return filepath.Join(p.dir, "lan.pcap")
}

func (p *fakePair) Finish(context.Context) {
	p.finished = true
	for name := range p.guests {
		os.WriteFile(filepath.Join(p.dir, name+".dmesg.txt"), []byte("[    0.000000] Linux version\n"), 0o644)
	}
	if p.packets == nil {
		return
	}
	f, _ := os.Create(p.Pcap())
	defer f.Close()
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65536, layers.LinkTypeEthernet)
	for _, payload := range p.packets {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(ServerIP), DstIP: net.ParseIP(ClientIP)}
		udp := &layers.UDP{SrcPort: 53, DstPort: 40000}
		udp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(payload))
		w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}, buf.Bytes())
	}
}

func (p *fakePair) Close() { p.closed = true }

// fakeGuest has the programs named in programs; results script how a
// program (by argv[0]) ends; loads fail or crash as scripted.
type fakeGuest struct {
	programs  map[string]bool
	results   map[string]*agent.Result
	loadErr   map[string]error
	loadCrash map[string]string // module -> title of the oops its load causes
	crashes   []console.Report
	loaded    []string
	files     map[string][]byte
}

func newGuest(programs ...string) *fakeGuest {
	g := &fakeGuest{programs: map[string]bool{}, results: map[string]*agent.Result{}, loadErr: map[string]error{}, loadCrash: map[string]string{}, files: map[string][]byte{}}
	for _, p := range programs {
		g.programs[p] = true
	}
	return g
}

func (g *fakeGuest) Exec(_ context.Context, cmd agent.Cmd) (*agent.Result, error) {
	if cmd.Argv[0] == "/bin/sh" && cmd.Argv[2] == `command -v "$1"` {
		if g.programs[cmd.Argv[4]] {
			return &agent.Result{Stdout: []byte("/usr/bin/" + cmd.Argv[4] + "\n")}, nil
		}
		return &agent.Result{ExitCode: 1}, nil
	}
	if r := g.results[cmd.Argv[0]]; r != nil {
		return r, nil
	}
	return &agent.Result{Argv: cmd.Argv, Duration: time.Second}, nil
}

type fakeProc struct{ r *agent.Result }

func (p fakeProc) Stop(context.Context) (*agent.Result, error) { return p.r, nil }

func (g *fakeGuest) Spawn(_ context.Context, argv []string) (Process, error) {
	return fakeProc{&agent.Result{Argv: argv, ExitCode: -1, Signal: "SIGTERM", Stderr: []byte("dnsmasq: exiting on receipt of SIGTERM")}}, nil
}

func (g *fakeGuest) WriteFile(_ context.Context, file string, data []byte, _ os.FileMode) error {
	g.files[file] = data
	return nil
}

func (g *fakeGuest) Load(_ context.Context, module, params string) error {
	if title := g.loadCrash[module]; title != "" {
		g.crashes = append(g.crashes, console.Report{Title: title})
		return errors.New("guest client: load " + module + ": the guest's kernel crashed: " + title)
	}
	if err := g.loadErr[module]; err != nil {
		return err
	}
	g.loaded = append(g.loaded, strings.TrimSpace(module+" "+params))
	return nil
}

func (g *fakeGuest) Listening(context.Context, string, int) (bool, error) { return true, nil }
func (g *fakeGuest) Crashes() []console.Report                            { return g.crashes }

// fakeBuild is a Debian kernel and a tree's modules laid out in a
// temporary folder.
func fakeBuild(t *testing.T) *Build {
	dir := t.TempDir()
	write := func(rel, data string) string {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
		return p
	}
	k := &kernels.Kernel{
		Release: "6.1.0-9-amd64", Image: write("boot/vmlinuz", "bzImage"),
		ModulesDir: filepath.Join(dir, "lib/modules/6.1.0-9-amd64"), BuildDir: filepath.Join(dir, "headers"),
		Provider: "debian:bookworm", Packages: []kernels.Package{{Name: "linux-image-6.1.0-9-amd64-unsigned", Version: "6.1.99-1"}},
	}
	write("lib/modules/6.1.0-9-amd64/modules.dep", "kernel/drivers/net/virtio_net.ko:\n")
	write("lib/modules/6.1.0-9-amd64/kernel/drivers/net/virtio_net.ko", "virtio_net")
	write("headers/.config", "CONFIG_X=y\n")
	return &Build{
		KernelSpec: "debian:bookworm", Kernel: k, KernelFiles: []string{"kernel/drivers/net/virtio_net.ko"},
		Modules: map[string]string{
			"layer4_5": write("ko/layer4_5.ko", "core"), "tag": write("ko/tag.ko", "tag"),
			"crash_test": write("ko/crash_test.ko", "crash"), "drop": write("ko/drop.ko", "never loaded"),
		},
		BuildLog: "# modules built with: gcc-12\n", Tree: "/src/kernel", TreeSums: "abc  layer4_5/core.c\n", Host: "qemu: QEMU emulator version 7.2\n",
	}
}

// newRunner runs text (a repro file in a temporary folder, with a
// payload to copy in) on the platform.
func newRunner(t *testing.T, text string, p *fakePlatform) *Runner {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "payload.bin"), []byte("PAYLOAD"), 0o644))
	file := filepath.Join(dir, "bug.yaml")
	require.NoError(t, os.WriteFile(file, []byte(text), 0o644))
	f, err := Parse(file)
	require.NoError(t, err)
	p.t = t
	if p.build == nil {
		p.build = fakeBuild(t)
	}
	return &Runner{File: f, Platform: p, Input: f.Input, Out: filepath.Join(t.TempDir(), "out", "bug-1.tar.gz")}
}

const dnsRepro = `title: the answer goes missing
client:
  modules:
    - name: tag
      params: {prefix: x, dest_port: "53"}
  files:
    - {from: payload.bin, to: /tmp/payload.bin}
steps:
  - {name: dnsmasq, guest: server, run: [dnsmasq, --keep-in-foreground], background: true, listening: udp/53}
  - {name: dig, guest: client, run: [dig, "@10.0.0.20", probe.layer45.test]}
reproduced:
  of:
    - {dns: {name: probe.layer45.test, answer: 10.9.8.7}, not: true}
`

// dnsPair answers the query on the wire when answered.
func dnsPair(t *testing.T, answered bool) *fakePair {
	p := &fakePair{guests: map[string]*fakeGuest{Server: newGuest("dnsmasq"), Client: newGuest("dig")}, packets: [][]byte{}}
	if answered {
		p.packets = append(p.packets, dnsAnswer(t, "probe.layer45.test", "10.9.8.7").Payload)
	}
	return p
}

// readBundle returns the bundle's files by path inside its folder.
func readBundle(t *testing.T, file string) map[string]string {
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		top, rel, _ := strings.Cut(hdr.Name, "/")
		require.Equal(t, BundleName(file), top, "one folder, named like the bundle")
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		out[rel] = string(b)
	}
}

func TestBundleHoldsEverythingAndReplays(t *testing.T) {
	p := &fakePlatform{pair: func(int) *fakePair { return dnsPair(t, true) }}
	r := newRunner(t, dnsRepro, p)
	rep, err := r.Run(context.Background(), 1)
	require.NoError(t, err)
	require.Equal(t, ExitNotReproduced, ExitCode(rep, err), "the answer is on the wire: the bug (its absence) did not show")
	require.Equal(t, "reproduced 0 of 1", rep.Summary(1))
	require.True(t, p.pairs[0].finished && p.pairs[0].closed)
	require.Equal(t, []string{"layer4_5", "tag dest_port=53 prefix=x"}, p.pairs[0].guests[Client].loaded)
	require.Equal(t, "PAYLOAD", string(p.pairs[0].guests[Client].files["/tmp/payload.bin"]))

	files := readBundle(t, r.Out)
	for _, want := range []string{
		"README.txt", "repro.yaml", "verdict.txt", "manifest.json", "SHA256SUMS", "host.txt", "tree.sha256",
		"kernel/kernel.json", "kernel/vmlinuz", "kernel/modules/6.1.0-9-amd64/modules.dep",
		"kernel/modules/6.1.0-9-amd64/kernel/drivers/net/virtio_net.ko", "kernel/build/.config",
		"modules/layer4_5.ko", "modules/tag.ko", "modules/build.log", "files/client/tmp/payload.bin",
		"runs/1/server.console.txt", "runs/1/client.console.txt", "runs/1/client.qemu.txt", "runs/1/client.dmesg.txt",
		"runs/1/lan.pcap", "runs/1/wire.txt", "runs/1/steps/dig.txt", "runs/1/steps/dnsmasq.txt", "runs/1/verdict.txt",
	} {
		require.Contains(t, files, want)
	}
	require.NotContains(t, files, "modules/drop.ko", "only the modules loaded")
	require.Equal(t, dnsRepro, files["repro.yaml"])
	require.Contains(t, files["README.txt"], "l45 repro --replay "+r.Out)
	require.Contains(t, files["README.txt"], "linux-image-6.1.0-9-amd64-unsigned=6.1.99-1")
	require.Contains(t, files["kernel/kernel.json"], `"version": "6.1.99-1"`)
	require.Contains(t, files["runs/1/wire.txt"], "udp 10.0.0.20:53 -> 10.0.0.40:40000 response")
	require.Contains(t, files["runs/1/verdict.txt"], "run 1: not reproduced")
	require.Contains(t, files["runs/1/verdict.txt"], "[no] NOT a DNS response on the wire answers probe.layer45.test with 10.9.8.7 (line 13)")
	require.Contains(t, files["runs/1/steps/dnsmasq.txt"], "killed by SIGTERM")
	require.Contains(t, files["manifest.json"], fmt.Sprintf(`"layer4_5": "%x"`, sha256.Sum256([]byte("core"))))
	for _, line := range strings.Split(strings.TrimSpace(files["SHA256SUMS"]), "\n") {
		sum, name, _ := strings.Cut(line, "  ")
		require.Equal(t, fmt.Sprintf("%x", sha256.Sum256([]byte(files[name]))), sum, name)
	}
	require.Len(t, strings.Split(strings.TrimSpace(files["SHA256SUMS"]), "\n"), len(files)-1, "every file but itself")

	u, err := OpenBundle(r.Out)
	require.NoError(t, err)
	defer u.Close()
	require.Empty(t, u.Missing())
	require.Equal(t, "probe.layer45.test", u.File.Reproduced.Of[0].DNS.Name)
	data, err := u.Input(Client, u.File.Client.Files[0])
	require.NoError(t, err)
	require.Equal(t, "PAYLOAD", string(data))
	require.Len(t, u.Modules(), 2)
	k, err := (&kernels.Dir{Path: u.KernelDir()}).Kernel(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, "6.1.0-9-amd64", k.Release)

	// The archive moved on and the image got lost: the replay says what
	// is missing and where to get it.
	require.NoError(t, os.Remove(filepath.Join(u.KernelDir(), "vmlinuz")))
	require.NoError(t, os.WriteFile(filepath.Join(u.Dir, "modules/tag.ko"), []byte("changed"), 0o644))
	missing := strings.Join(u.Missing(), "\n")
	require.Contains(t, missing, "kernel/vmlinuz is missing: the kernel image: it is in Debian's linux-image-6.1.0-9-amd64-unsigned=6.1.99-1 (https://snapshot.debian.org/binary/linux-image-6.1.0-9-amd64-unsigned/)")
	require.Contains(t, missing, "modules/tag.ko is damaged")
}

func TestExitCodes(t *testing.T) {
	crashRepro := "client:\n  modules: [{name: crash_test, params: {mode: \"null\"}}]\nreproduced:\n  of: [crash: {guest: client, title: NULL pointer}]\n"
	for _, tc := range []struct {
		name, text string
		p          *fakePlatform
		code       int
		msg        string // in the error or the verdict
	}{
		{"the tree does not compile", dnsRepro, &fakePlatform{prepareErr: infra.Wrap("build the Layer 4.5 tree /x", errors.New("core.c:3: error: expected ';'"))}, ExitCannotRun, "expected ';'"},
		{"reproduced", dnsRepro, &fakePlatform{pair: func(int) *fakePair { return dnsPair(t, false) }}, ExitReproduced, "[yes] NOT a DNS response"},
		{"not reproduced", dnsRepro, &fakePlatform{pair: func(int) *fakePair { return dnsPair(t, true) }}, ExitNotReproduced, "[no]"},
		{"boot fails", dnsRepro, &fakePlatform{pair: func(int) *fakePair {
			p := dnsPair(t, true)
			p.bootErr = infra.Wrap("guest server", errors.New("QEMU exited"))
			return p
		}}, ExitCannotRun, "QEMU exited"},
		{"a program not in the image", dnsRepro, &fakePlatform{pair: func(int) *fakePair {
			p := dnsPair(t, true)
			p.guests[Client].programs = map[string]bool{}
			return p
		}}, ExitCannotRun, `bug.yaml:10: steps[2].run: "dig" is not in the client's image`},
		{"a module refused", dnsRepro, &fakePlatform{pair: func(int) *fakePair {
			p := dnsPair(t, true)
			p.guests[Client].loadErr["tag"] = &agent.ModuleError{Op: "insmod", Module: "/tmp/modules/tag.ko", Errno: syscall.EINVAL, Log: []string{"tag: unknown parameter 'prefix'"}}
			return p
		}}, ExitCannotRun, "bug.yaml:4: the client refused module tag dest_port=53 prefix=x: insmod /tmp/modules/tag.ko: invalid argument (EINVAL); kernel said: tag: unknown parameter 'prefix'"},
		{"a module the tree lacks", "client:\n  modules: [{name: nosuch}]\nreproduced:\n  of: [crash: {}]\n", &fakePlatform{}, ExitCannotRun, `bug.yaml:2: client.modules[1].name: the tree has no module "nosuch" (it has: crash_test drop tag)`},
		{"a crash while loading", crashRepro, &fakePlatform{pair: func(int) *fakePair {
			p := dnsPair(t, true)
			p.guests[Client].loadCrash["crash_test"] = "BUG: kernel NULL pointer dereference in crash_test_init"
			return p
		}}, ExitReproduced, "[yes] a kernel crash in the client titled ...\"NULL pointer\"... (line 4): client: BUG: kernel NULL pointer dereference in crash_test_init"},
		{"the kernel crashes while booting", crashRepro, &fakePlatform{pair: func(int) *fakePair {
			p := dnsPair(t, true)
			p.bootErr = &vm.GuestError{Guest: Client, Op: "boot", Err: errors.New("the guest agent never said hello"), Crashes: []string{"BUG: kernel NULL pointer dereference in l45_init"}}
			return p
		}}, ExitReproduced, "client: BUG: kernel NULL pointer dereference in l45_init"},
		{"another crash: undecided", strings.Replace(crashRepro, "NULL pointer", "KASAN", 1), &fakePlatform{pair: func(int) *fakePair {
			p := dnsPair(t, true)
			p.guests[Client].loadCrash["crash_test"] = "BUG: kernel NULL pointer dereference in crash_test_init"
			return p
		}}, ExitCannotRun, "[unknown]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(t, tc.text, tc.p)
			rep, err := r.Run(context.Background(), 1)
			require.Equal(t, tc.code, ExitCode(rep, err), "report %+v, error %v", rep, err)
			text := fmt.Sprint(err)
			if rep != nil {
				for _, run := range rep.Runs {
					text += "\n" + strings.Join(run.Why, "\n")
				}
			}
			require.Contains(t, text, tc.msg)
		})
	}
}

func TestRepeatCountsFreshRuns(t *testing.T) {
	p := &fakePlatform{pair: func(n int) *fakePair { return dnsPair(t, n%2 == 1) }}
	r := newRunner(t, dnsRepro, p)
	rep, err := r.Run(context.Background(), 4)
	require.NoError(t, err)
	require.Equal(t, "reproduced 2 of 4", rep.Summary(4))
	require.Equal(t, ExitReproduced, ExitCode(rep, err))
	require.Len(t, p.pairs, 4, "each run on fresh guests")
	for _, pair := range p.pairs {
		require.True(t, pair.closed)
	}
	files := readBundle(t, r.Out)
	for n := 1; n <= 4; n++ {
		require.Contains(t, files, fmt.Sprintf("runs/%d/verdict.txt", n))
	}
	require.Contains(t, files["verdict.txt"], "reproduced 2 of 4")
	require.Contains(t, files["runs/2/verdict.txt"], "REPRODUCED")

	// A run that cannot run ends the series; what was reproduced stays.
	p = &fakePlatform{pair: func(n int) *fakePair {
		pair := dnsPair(t, false)
		if n == 2 {
			pair.bootErr = errors.New("no agent")
		}
		return pair
	}}
	rep, err = newRunner(t, dnsRepro, p).Run(context.Background(), 3)
	require.NoError(t, err)
	require.Equal(t, "reproduced 1 of 3 (1 could not run or judge); stopped after run 2", rep.Summary(3))
	require.Equal(t, ExitReproduced, ExitCode(rep, err))
}
