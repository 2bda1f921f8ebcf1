package kernels

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"layer45/harness/cache"
)

// Source is a kernel built from Debian's linux-source-<Series> package with
// Layer 4.5 built in (CONFIG_LAYER4_5=y): tinyconfig plus the repository's
// config fragments for a QEMU guest, and debug.config (KASAN, lockdep,
// kmemleak, ...) when Debug is set. The build is cached by the source
// package version, the Layer 4.5 sources and the fragments.
type Source struct {
	Series string // e.g. "6.1"
	Debug  bool
	// Layer45 is the repository's kernel/ folder.
	Layer45 string
	Cache   *cache.Cache
	Apt     Runner
}

func (s *Source) Name() string {
	n := "source:" + s.Series
	if s.Debug {
		n += ":debug"
	}
	return n
}

func (s *Source) run() Runner {
	if s.Apt != nil {
		return s.Apt
	}
	return execRunner
}

// fragments are the config files merged on top of tinyconfig, in order.
func (s *Source) fragments() []string {
	f := []string{"guest.config", "builtin.config"}
	if s.Debug {
		f = append(f, "debug.config")
	}
	for i, name := range f {
		f[i] = filepath.Join(s.Layer45, "config", name)
	}
	return f
}

// Kernel builds the kernel, or returns the cached build.
func (s *Source) Kernel(ctx context.Context, progress io.Writer) (*Kernel, error) {
	pkg := "linux-source-" + s.Series
	out, err := s.run()(ctx, "", nil, "apt-cache", "show", pkg)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %s is not known to apt: %w\n(run apt-get update; the series must be in this machine's Debian suite)", s.Name(), pkg, err)
	}
	version := ""
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "Version: "); ok {
			version = v
			break
		}
	}
	if version == "" {
		return nil, fmt.Errorf("kernel %s: no version of %s in apt's lists", s.Name(), pkg)
	}
	if !exists(filepath.Join(s.Layer45, "builtin", "apply.sh")) {
		return nil, fmt.Errorf("kernel %s builds Layer 4.5 in with the tree's builtin/apply.sh, which %s lacks: test a tree of another layout as a module (debian:..., path:...)", s.Name(), s.Layer45)
	}
	srcHash, err := cache.HashFiles(append([]string{filepath.Join(s.Layer45, "layer4_5"), filepath.Join(s.Layer45, "include"), filepath.Join(s.Layer45, "builtin")}, s.fragments()...)...)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", s.Name(), err)
	}
	c := s.Cache
	if c == nil {
		if c, err = cache.Default(); err != nil {
			return nil, err
		}
	}
	key := cache.Key("kernel-"+strings.ReplaceAll(s.Name(), ":", "-"), pkg+"="+version, srcHash)
	k, err := cachedKernel(ctx, c, s.Name(), key, func(ctx context.Context, dir string) error {
		return s.build(ctx, dir, pkg, version, progress)
	})
	if err != nil {
		return nil, err
	}
	// Built here with this machine's compiler: modules are built with it.
	if k.Toolchain, err = hostToolchain(ctx, s.run(), k.BuildDir, nil); err != nil {
		return nil, fmt.Errorf("kernel %s (%s): no compiler for its modules: %w", s.Name(), k.Release, err)
	}
	return k, nil
}

func (s *Source) build(ctx context.Context, dir, pkg, version string, progress io.Writer) error {
	say := func(format string, args ...any) {
		if progress != nil {
			fmt.Fprintf(progress, format+"\n", args...)
		}
	}
	run := func(wd string, name string, args ...string) error {
		_, err := s.run()(ctx, wd, nil, name, args...)
		return err
	}
	say("Building kernel %s from %s %s in %s (takes minutes)", s.Name(), pkg, version, dir)
	if _, err := s.run()(ctx, dir, progress, "apt-get", "-o", "APT::Sandbox::User=root", "download", pkg+"="+version); err != nil {
		return fmt.Errorf("download %s: %w", pkg, err)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("expected one %s package, found %d", pkg, len(debs))
	}
	unpacked := filepath.Join(dir, "pkg")
	if err := run("", "dpkg", "-x", debs[0], unpacked); err != nil {
		return err
	}
	os.Remove(debs[0])
	tarballs, _ := filepath.Glob(filepath.Join(unpacked, "usr/src", pkg+".tar.*"))
	if len(tarballs) != 1 {
		return fmt.Errorf("no source tarball in %s", pkg)
	}
	if err := run(dir, "tar", "-xf", tarballs[0]); err != nil {
		return err
	}
	os.RemoveAll(unpacked)
	src := filepath.Join(dir, pkg)
	if err := run("", "sh", filepath.Join(s.Layer45, "builtin", "apply.sh"), src); err != nil {
		return fmt.Errorf("apply Layer 4.5 to the tree: %w", err)
	}
	jobs := fmt.Sprintf("-j%d", runtime.NumCPU())
	say("configuring: tinyconfig + %s", strings.Join(s.fragments(), " + "))
	if err := run(src, "make", "tinyconfig"); err != nil {
		return err
	}
	if err := run(src, "sh", append([]string{"scripts/kconfig/merge_config.sh", "-m", ".config"}, s.fragments()...)...); err != nil {
		return err
	}
	if err := run(src, "make", "olddefconfig"); err != nil {
		return err
	}
	if err := checkConfig(filepath.Join(src, ".config"), "CONFIG_LAYER4_5=y"); err != nil {
		return err
	}
	say("compiling (make %s bzImage modules)", jobs)
	if _, err := s.run()(ctx, src, progress, "make", jobs, "bzImage", "modules"); err != nil {
		return fmt.Errorf("kernel build failed: %w", err)
	}
	root := filepath.Join(dir, "root")
	if err := run(src, "make", "modules_install", "INSTALL_MOD_PATH="+root); err != nil {
		return err
	}
	relb, err := s.run()(ctx, src, nil, "make", "-s", "kernelrelease")
	if err != nil {
		return err
	}
	rel := strings.TrimSpace(string(relb))
	modules := filepath.Join(root, "lib/modules", rel)
	if err := os.MkdirAll(modules, 0o755); err != nil {
		return err
	}
	if err := run("", "depmod", "-b", root, rel); err != nil {
		return fmt.Errorf("index modules: %w", err)
	}
	return writeManifest(dir, &Kernel{
		Release:        rel,
		Image:          filepath.Join(src, "arch/x86/boot/bzImage"),
		ModulesDir:     modules,
		BuildDir:       src,
		Layer45Builtin: true,
		Provider:       s.Name(),
		Packages:       []Package{{Name: pkg, Version: version}},
	})
}

// checkConfig fails when the merged configuration lost a line the build
// depends on (a fragment naming an option the kernel does not have).
func checkConfig(path, line string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l == line {
			return nil
		}
	}
	return fmt.Errorf("the kernel configuration lacks %s after merging the fragments", line)
}
