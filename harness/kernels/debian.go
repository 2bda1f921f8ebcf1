package kernels

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"layer45/harness/cache"
)

// DefaultDebianSuite is the distribution whose stock kernel is the default.
const DefaultDebianSuite = "bookworm"

// Debian is Debian's prebuilt amd64 kernel of a suite: the image (the
// unsigned package where there is one: the same kernel without the
// signature wrapper), its modules and its headers, fetched with apt-get
// download and unpacked with dpkg -x into the cache; nothing is installed
// on the host.
//
// The machine's own suite is read with the system's apt configuration; any
// other suite with a private one under the cache (see aptConfig). Modules
// are built with the compiler the kernel was built with (see Toolchain).
type Debian struct {
	Suite string
	// Series, when set, is the kernel series asked for (debian:SUITE:SERIES):
	// the suite's linux-image-SERIES-amd64 metapackage (bookworm carries
	// 6.12 that way), or its default kernel if that is of this series. A
	// suite whose kernel moved on to another series is an error, never a
	// silent switch. Empty: the suite's default kernel (linux-image-amd64).
	Series string
	// Cache defaults to cache.Default().
	Cache *cache.Cache
	// Apt runs apt-cache/apt-get/dpkg/depmod/mmdebstrap; nil means the real
	// commands.
	Apt Runner
	// Host is this machine's Debian codename (its own suite uses the
	// system's apt configuration); empty means read /etc/os-release.
	Host string
	// Keyring is what a private apt configuration requires to exist;
	// empty means DebianKeyring.
	Keyring string
}

// Runner runs a command in dir and returns its standard output.
type Runner func(ctx context.Context, dir string, stderr io.Writer, name string, args ...string) ([]byte, error)

func execRunner(ctx context.Context, dir string, stderr io.Writer, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	if stderr != nil {
		cmd.Stderr = io.MultiWriter(&errb, stderr)
	}
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

func (d *Debian) Name() string {
	if d.Series != "" {
		return "debian:" + d.Suite + ":" + d.Series
	}
	return "debian:" + d.Suite
}

func (d *Debian) run() Runner {
	if d.Apt != nil {
		return d.Apt
	}
	return execRunner
}

// packageSet is what one Debian kernel is made of.
type packageSet struct {
	release  string    // uname -r, e.g. 6.1.0-57-amd64, 7.2.13+deb14-amd64
	version  string    // Debian version of the kernel's packages
	packages []Package // image (and modules), headers, common headers, kbuild
	// compiler is the headers' dependency naming the kernel's compiler
	// (linux-compiler-gcc-12-x86, gcc-14, gcc-16-for-host), if any.
	compiler string
	// kbuildDeps are the packages the kbuild tools need to run.
	kbuildDeps []string
}

// imageDep finds the kernel a linux-image metapackage points at.
var imageDep = regexp.MustCompile(`linux-image-(\d+\.\d+[^ ,]*-amd64)(?:-unsigned)? \(= ([^)]+)\)`)

// resolve finds the kernel the suite (and series) currently points at and
// the exact packages it is made of. Debian's packaging differs between
// releases, so the set is read from the packages' own dependencies:
// linux-image-REL-unsigned (up to 6.12) or linux-binary-unsigned-REL plus
// linux-modules-REL and linux-base-REL (7.x); linux-headers-REL and what it
// depends on (common headers, kbuild, the compiler).
func (d *Debian) resolve(ctx context.Context, a *aptConfig) (packageSet, error) {
	var meta stanza
	metas := []string{"linux-image-amd64"}
	if d.Series != "" {
		metas = append(metas, "linux-image-"+d.Series+"-amd64")
	}
	if err := a.prefetch(ctx, metas...); err != nil {
		return packageSet{}, fmt.Errorf("look up Debian %s's kernel package: %w", d.Suite, err)
	}
	if d.Series != "" {
		st, err := a.show(ctx, "linux-image-"+d.Series+"-amd64")
		switch {
		case err == nil:
			meta = st
		case !errors.Is(err, errNoPackage):
			return packageSet{}, err
		}
	}
	if meta == nil {
		st, err := a.show(ctx, "linux-image-amd64")
		if err != nil {
			return packageSet{}, fmt.Errorf("look up Debian %s's kernel package: %w\n(is the package list current? run: apt-get update)", d.Suite, err)
		}
		meta = st
	}
	m := imageDep.FindStringSubmatch(meta["Depends"])
	if m == nil {
		return packageSet{}, fmt.Errorf("cannot find the kernel in %s's dependencies: %q", meta["Package"], meta["Depends"])
	}
	set := packageSet{release: m[1], version: m[2]}
	if d.Series != "" && !strings.HasPrefix(set.release, d.Series+".") {
		return packageSet{}, fmt.Errorf("Debian %s has no %s kernel: it has no linux-image-%s-amd64, and its kernel is %s (%s)", d.Suite, d.Series, d.Series, set.release, set.version)
	}
	rel := set.release
	add := func(st stanza, exact bool) error {
		if exact && st["Version"] != set.version {
			return fmt.Errorf("Debian %s: %s is at %s, not at the kernel's version %s (archive in flux? try again later)", d.Suite, st["Package"], st["Version"], set.version)
		}
		for _, p := range set.packages {
			if p.Name == st["Package"] {
				return nil
			}
		}
		set.packages = append(set.packages, Package{Name: st["Package"], Version: st["Version"]})
		return nil
	}
	need := func(name string, exact bool) (stanza, error) {
		st, err := a.show(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", rel, err)
		}
		return st, add(st, exact)
	}

	// Ask about every package this kernel may be made of at once.
	var names []string
	for _, n := range []string{"linux-image-%s-unsigned", "linux-image-%s", "linux-binary-unsigned-%s", "linux-binary-%s", "linux-modules-%s", "linux-base-%s", "linux-headers-%s"} {
		names = append(names, fmt.Sprintf(n, rel))
	}
	if err := a.prefetch(ctx, names...); err != nil {
		return packageSet{}, err
	}

	// The image.
	if st, err := a.show(ctx, "linux-image-"+rel+"-unsigned"); err == nil {
		if err := add(st, true); err != nil {
			return packageSet{}, err
		}
	} else if !errors.Is(err, errNoPackage) {
		return packageSet{}, err
	} else {
		img, err := a.show(ctx, "linux-image-"+rel)
		if err != nil {
			return packageSet{}, fmt.Errorf("kernel %s: %w", rel, err)
		}
		binary := "linux-binary-" + rel
		if !hasDependency(img, binary) {
			// Only a signed image: it boots the same under QEMU.
			if err := add(img, true); err != nil {
				return packageSet{}, err
			}
		} else {
			if st, err := a.show(ctx, "linux-binary-unsigned-"+rel); err == nil {
				err = add(st, true)
				if err != nil {
					return packageSet{}, err
				}
			} else if _, err := need(binary, true); err != nil {
				return packageSet{}, err
			}
			for _, alts := range depends(img["Depends"]) {
				if n := alts[0].name; n != binary && strings.HasSuffix(n, "-"+rel) {
					if _, err := need(n, true); err != nil {
						return packageSet{}, err
					}
				}
			}
		}
	}

	// The headers and what building modules against them needs.
	headers, err := need("linux-headers-"+rel, true)
	if err != nil {
		return packageSet{}, err
	}
	compilerDep := regexp.MustCompile(`^(gcc-\d+(-for-host)?|linux-compiler-gcc-\d+-x86)$`)
	names = nil
	for _, alts := range depends(headers["Depends"]) {
		names = append(names, alts[0].name)
	}
	if err := a.prefetch(ctx, names...); err != nil {
		return packageSet{}, err
	}
	for _, alts := range depends(headers["Depends"]) {
		dep := alts[0]
		switch {
		case strings.HasPrefix(dep.name, "linux-headers-") && strings.HasSuffix(dep.name, "-common"):
			if _, err := need(dep.name, true); err != nil {
				return packageSet{}, err
			}
		case strings.HasPrefix(dep.name, "linux-kbuild-"):
			st, err := need(dep.name, dep.op == "=")
			if err != nil {
				return packageSet{}, err
			}
			for _, k := range depends(st["Depends"]) {
				set.kbuildDeps = append(set.kbuildDeps, k[0].name)
			}
		case dep.name == "linux-base-"+rel:
			if _, err := need(dep.name, true); err != nil {
				return packageSet{}, err
			}
		case compilerDep.MatchString(dep.name):
			set.compiler = dep.name
		}
	}
	return set, nil
}

func hasDependency(st stanza, name string) bool {
	for _, alts := range depends(st["Depends"]) {
		for _, a := range alts {
			if a.name == name {
				return true
			}
		}
	}
	return false
}

func hostCodename() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VERSION_CODENAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// Kernel fetches and unpacks the kernel, or returns the cached one, with
// the toolchain its modules are built with.
func (d *Debian) Kernel(ctx context.Context, progress io.Writer) (*Kernel, error) {
	c := d.Cache
	if c == nil {
		var err error
		if c, err = cache.Default(); err != nil {
			return nil, err
		}
	}
	host, keyring := d.Host, d.Keyring
	if host == "" {
		host = hostCodename()
	}
	if keyring == "" {
		keyring = DebianKeyring
	}
	a, err := openApt(ctx, d.Suite, host, keyring, c.Root(), d.run(), progress)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", d.Name(), err)
	}
	set, err := d.resolve(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", d.Name(), err)
	}
	var keyParts []string
	for _, p := range set.packages {
		keyParts = append(keyParts, p.Name+"="+p.Version)
	}
	k, err := cachedKernel(ctx, c, d.Name(), cache.Key("kernel-debian-"+set.release, keyParts...), func(ctx context.Context, dir string) error {
		return d.fetch(ctx, a, dir, set, progress)
	})
	if err != nil {
		return nil, err
	}
	k.Provider = d.Name()
	if a.private() {
		k.Toolchain, err = buildRootToolchain(ctx, c, a, d.run(), k.BuildDir, set.compiler, set.kbuildDeps, progress)
	} else {
		k.Toolchain, err = hostToolchain(ctx, d.run(), k.BuildDir, set.kbuildDeps)
	}
	if err != nil {
		return nil, fmt.Errorf("kernel %s (%s): no compiler for its modules: %w", d.Name(), k.Release, err)
	}
	return k, nil
}

func (d *Debian) fetch(ctx context.Context, a *aptConfig, dir string, set packageSet, progress io.Writer) error {
	debs := filepath.Join(dir, "debs")
	root := filepath.Join(dir, "root")
	for _, p := range []string{debs, root} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
	}
	args := []string{"download"}
	for _, p := range set.packages {
		args = append(args, p.Name+"="+p.Version)
	}
	if progress != nil {
		fmt.Fprintf(progress, "Fetching kernel %s (%s) into %s\n", set.release, set.version, dir)
	}
	if _, err := a.aptGet(ctx, debs, progress, args...); err != nil {
		return fmt.Errorf("download kernel packages: %w\n(check access to the Debian archive and run: apt-get update)", err)
	}
	files, err := filepath.Glob(filepath.Join(debs, "*.deb"))
	if err != nil || len(files) != len(set.packages) {
		return fmt.Errorf("expected %d kernel packages in %s, found %d", len(set.packages), debs, len(files))
	}
	for _, f := range files {
		if _, err := d.run()(ctx, "", nil, "dpkg", "-x", f, root); err != nil {
			return fmt.Errorf("unpack %s: %w", filepath.Base(f), err)
		}
		os.Remove(f) // the unpacked tree is what we keep
	}
	os.Remove(debs)

	rel := set.release
	build := filepath.Join(root, "usr/src/linux-headers-"+rel)
	if err := relocateHeaders(build); err != nil {
		return err
	}
	modules, err := modulesDir(root, rel)
	if err != nil {
		return err
	}
	image, err := findImage(root, rel)
	if err != nil {
		return err
	}
	if _, err := d.run()(ctx, "", nil, "depmod", "-b", root, rel); err != nil {
		return fmt.Errorf("index modules: %w (is kmod installed?)", err)
	}
	k := &Kernel{
		Release:    rel,
		Image:      image,
		ModulesDir: modules,
		BuildDir:   build,
		Provider:   d.Name(),
		Packages:   set.packages,
	}
	return writeManifest(dir, k)
}

// modulesDir finds the unpacked lib/modules/REL: under /lib up to 6.1,
// under /usr/lib from the releases with merged /usr packaging. depmod -b
// looks under BASE/lib/modules, so a /usr/lib tree gets a link there.
func modulesDir(root, rel string) (string, error) {
	classic := filepath.Join(root, "lib/modules", rel)
	if _, err := os.Stat(classic); err == nil {
		return classic, nil
	}
	usr := filepath.Join(root, "usr/lib/modules", rel)
	if _, err := os.Stat(usr); err != nil {
		return "", fmt.Errorf("kernel %s: the packages hold no lib/modules/%s", rel, rel)
	}
	if err := os.MkdirAll(filepath.Dir(classic), 0o755); err != nil {
		return "", err
	}
	if err := os.Symlink(filepath.Join("../../usr/lib/modules", rel), classic); err != nil {
		return "", err
	}
	return usr, nil
}

// findImage finds the kernel image: /boot/vmlinuz-REL up to 6.12,
// /usr/lib/modules/REL/vmlinuz[.unsigned] from 7.x.
func findImage(root, rel string) (string, error) {
	for _, p := range []string{
		"boot/vmlinuz-" + rel,
		"usr/lib/modules/" + rel + "/vmlinuz.unsigned",
		"usr/lib/modules/" + rel + "/vmlinuz",
		"lib/modules/" + rel + "/vmlinuz",
	} {
		if fi, err := os.Stat(filepath.Join(root, p)); err == nil && fi.Mode().IsRegular() {
			return filepath.Join(root, p), nil
		}
	}
	return "", fmt.Errorf("kernel %s: no kernel image (boot/vmlinuz-%s or usr/lib/modules/%s/vmlinuz*) in the packages", rel, rel, rel)
}

// relocateHeaders points Debian's per-flavour headers Makefile, which
// names the common headers (and, from 7.x, its own directory as
// KBUILD_OUTPUT) by absolute /usr/src path, at the unpacked copy.
func relocateHeaders(build string) error {
	mk := filepath.Join(build, "Makefile")
	b, err := os.ReadFile(mk)
	if err != nil {
		return fmt.Errorf("kernel headers: %w", err)
	}
	// make -C runs in the headers directory, and the cache entry moves
	// after it is built, so the paths must be relative to it.
	fixed := bytes.ReplaceAll(b, []byte("include /usr/src/"), []byte("include ../"))
	if bytes.Equal(fixed, b) {
		return fmt.Errorf("kernel headers: %s does not include /usr/src/...; unknown header layout", mk)
	}
	fixed = bytes.ReplaceAll(fixed, []byte("KBUILD_OUTPUT="+filepath.Join("/usr/src", filepath.Base(build))+"\n"), []byte("KBUILD_OUTPUT=$(CURDIR)\n"))
	if bytes.Contains(fixed, []byte("/usr/src/")) {
		return fmt.Errorf("kernel headers: %s still names /usr/src after relocation; unknown header layout:\n%s", mk, fixed)
	}
	return os.WriteFile(mk, fixed, 0o644)
}
