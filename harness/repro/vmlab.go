package repro

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"layer45/harness/artifacts"
	"layer45/harness/infra"
	"layer45/harness/initramfs"
	"layer45/harness/kernels"
	"layer45/harness/modules"
	"layer45/harness/repo"
	"layer45/harness/vm"
)

// VM is the Platform of real guests (harness/vm): the kernel fetched or
// built as for the suites and the tree compiled for it, or, to replay a
// bundle, both taken from the bundle.
type VM struct {
	File *File
	// Bundle, when set, is replayed: its kernel and modules are used and
	// nothing is fetched or built.
	Bundle *Unpacked
	// Name names the evidence folders (artifacts root/RUN/repro-NAME/run-N).
	Name     string
	Progress io.Writer

	env   *vm.Env
	build *Build
}

func (v *VM) progressf(format string, args ...any) {
	if v.Progress != nil {
		fmt.Fprintf(v.Progress, format+"\n", args...)
	}
}

// Prepare gets the kernel and the modules.
func (v *VM) Prepare(ctx context.Context) (*Build, error) {
	if v.Bundle != nil {
		return v.prepareReplay(ctx)
	}
	tree, err := v.File.TreeDir()
	if err != nil {
		return nil, infra.Wrap("find the Layer 4.5 tree", err)
	}
	spec := v.File.Kernel
	v.progressf("kernel %s: getting it ready (the first use fetches or builds it)", specName(spec))
	start := time.Now()
	// A kernel with Layer 4.5 built in is built from the file's tree,
	// which vm.NewEnv reads from the environment as tests set it.
	old, had := os.LookupEnv("L45_TREE")
	os.Setenv("L45_TREE", tree)
	v.env, err = vm.NewEnv(ctx, spec, os.Getenv("L45_ACCEL"), v.Progress)
	if had {
		os.Setenv("L45_TREE", old)
	} else {
		os.Unsetenv("L45_TREE")
	}
	if err != nil {
		return nil, err
	}
	k := v.env.Kernel
	v.progressf("kernel %s ready in %.0fs; guests run on %s", k, time.Since(start).Seconds(), v.env.AccelNote)
	v.progressf("building Layer 4.5 from %s for %s (cached by its sources)", tree, k.Release)
	start = time.Now()
	set, err := modules.Build(ctx, v.env.Cache, k, tree)
	if err != nil {
		return nil, infra.Wrap("build the Layer 4.5 tree "+tree, err)
	}
	v.progressf("built %d modules in %.0fs (%s)", len(set.KOs), time.Since(start).Seconds(), set.Dir)
	sums, err := treeSums(tree)
	if err != nil {
		return nil, infra.Wrap("checksum the Layer 4.5 tree "+tree, err)
	}
	v.build = &Build{KernelSpec: specName(spec), Kernel: k, Modules: set.KOs, BuildLog: set.Log, Tree: tree, TreeSums: sums}
	return v.finishBuild()
}

// prepareReplay takes the kernel and the modules from the bundle, after
// saying exactly what it lacks, if anything.
func (v *VM) prepareReplay(ctx context.Context) (*Build, error) {
	u := v.Bundle
	if missing := u.Missing(); len(missing) > 0 {
		return nil, infra.Wrap("replay "+u.Path, fmt.Errorf("the bundle lacks what the replay needs:\n  %s", strings.Join(missing, "\n  ")))
	}
	v.progressf("kernel %s from the bundle (nothing is fetched)", u.Manifest.Kernel.Release)
	var err error
	if v.env, err = vm.NewEnv(ctx, "dir:"+u.KernelDir(), os.Getenv("L45_ACCEL"), v.Progress); err != nil {
		return nil, err
	}
	v.progressf("guests run on %s", v.env.AccelNote)
	v.build = &Build{KernelSpec: u.Manifest.KernelSpec, Kernel: v.env.Kernel, Modules: u.Modules(),
		BuildLog: u.Read("modules/build.log"), Tree: u.Manifest.Tree, TreeSums: u.Read("tree.sha256")}
	return v.finishBuild()
}

func (v *VM) finishBuild() (*Build, error) {
	files, err := initramfs.GuestModuleFiles(v.env.Kernel)
	if err != nil {
		return nil, infra.Wrap("list the guests' kernel modules", err)
	}
	v.build.KernelFiles = files
	v.build.Host = hostText(v.env)
	return v.build, nil
}

// specName is the kernel spec that an empty one stands for.
func specName(spec string) string {
	if spec == "" {
		return "debian:" + kernels.DefaultDebianSuite
	}
	return spec
}

// treeSums are sha256sum lines of the tree's source files.
func treeSums(tree string) (string, error) {
	files, err := modules.SourceFiles(tree)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(tree, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%x  %s\n", sha256.Sum256(data), filepath.ToSlash(f))
	}
	return b.String(), nil
}

// hostText says what ran the guests: QEMU, the host packages the guest
// image takes its programs from, the accelerator, Go and the checkout.
func hostText(env *vm.Env) string {
	var b strings.Builder
	run := func(label string, name string, args ...string) {
		out, err := exec.Command(name, args...).CombinedOutput()
		text := strings.TrimSpace(string(out))
		if err != nil {
			text = fmt.Sprintf("(%v) %s", err, text)
		}
		fmt.Fprintf(&b, "%s:\n  %s\n", label, strings.ReplaceAll(text, "\n", "\n  "))
	}
	run("qemu", "qemu-system-x86_64", "--version")
	run("packages", "dpkg-query", "-W", "qemu-system-x86", "busybox-static", "bind9-dnsutils", "dnsmasq-base")
	fmt.Fprintf(&b, "accelerator:\n  %s\ngo:\n  %s\n", env.AccelNote, runtime.Version())
	if root, err := repo.Root(); err == nil {
		run("layer45 checkout "+root, "git", "-C", root, "log", "-1", "--format=%H %cI %s")
		run("uncommitted changes", "git", "-C", root, "status", "--short")
	}
	return b.String()
}

var slowdownOnce sync.Once

// NewPair makes the run's link and evidence folder.
func (v *VM) NewPair(ctx context.Context, n int) (Pair, error) {
	p := &vmPair{v: v, n: n, machines: map[string]*vm.Machine{}}
	var err error
	if p.ev, err = artifacts.New(fmt.Sprintf("repro-%s/run-%d", v.Name, n)); err != nil {
		return nil, infra.Wrap("the run's evidence folder", err)
	}
	if p.link, err = vm.OpenLink(p.ev, "lan"); err != nil {
		p.ev.Finish(false)
		return nil, err
	}
	return p, nil
}

type vmPair struct {
	v        *VM
	n        int
	ev       *artifacts.Dir
	link     *vm.Link
	machines map[string]*vm.Machine
}

func (p *vmPair) Boot(ctx context.Context) error {
	for _, g := range []struct{ name, ip string }{{Server, ServerIP}, {Client, ClientIP}} {
		m, err := vm.Start(ctx, p.v.env, p.ev, nil, vm.WithName(g.name), vm.WithNIC(p.link, g.ip+"/24"), vm.WithCPUs(p.v.File.CPUs))
		if err != nil {
			return err
		}
		p.machines[g.name] = m
		p.v.progressf("run %d: %s up after %.1fs", p.n, g.name, m.BootTime().Seconds())
	}
	var err error
	slowdownOnce.Do(func() {
		var f float64
		if f, err = vm.MeasureSlowdown(ctx, p.machines[Server]); err == nil {
			vm.SetSlowdown(f)
			p.v.progressf("guests run %.1fx slower than the host: timeouts are stretched by that", f)
		}
	})
	if err != nil {
		return fmt.Errorf("measure the guests' speed: %w", err)
	}
	return nil
}

func (p *vmPair) Guest(name string) Guest {
	m := p.machines[name]
	if m == nil {
		return nil
	}
	return &vmGuest{m, &modules.Set{KOs: p.v.build.Modules}}
}

func (p *vmPair) Dir() string  { return p.ev.Path() }
func (p *vmPair) Pcap() string { return p.link.Pcap() }

// Finish saves what each guest can still tell, as vm.Boot does for a
// failed test, and powers it off.
func (p *vmPair) Finish(ctx context.Context) {
	for _, m := range p.machines {
		// A restored guest's console starts at the restore: the bundle
		// also carries the boot its snapshot was saved after.
		if c := m.SnapshotConsole(); c != "" {
			if data, err := os.ReadFile(c); err == nil {
				p.ev.WriteFile(m.Name+".snapshot-boot.console.txt", data)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, vm.Scale(30*time.Second))
		m.SaveEvidence(cctx)
		cancel()
		m.Close()
	}
}

// Close closes the link and removes the evidence folder (L45_KEEP=1
// keeps it); the bundle has it.
func (p *vmPair) Close() {
	for _, m := range p.machines {
		m.Close()
	}
	p.link.Close()
	p.ev.Finish(false)
}

// vmGuest is a Machine with the run's modules.
type vmGuest struct {
	*vm.Machine
	mods *modules.Set
}

func (g *vmGuest) Spawn(ctx context.Context, argv []string) (Process, error) {
	p, err := g.Machine.Spawn(ctx, argv...)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (g *vmGuest) Load(ctx context.Context, module, params string) error {
	return g.Machine.LoadModule(ctx, g.mods, module, params)
}
