package kernels

import (
	"bufio"
	"bytes"
	"context"
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

// Debian is Debian's prebuilt kernel for a suite: the image package (the
// unsigned one: the same kernel without the signature wrapper) and its
// headers, fetched with apt-get download and unpacked with dpkg -x into the
// cache; nothing is installed on the host.
type Debian struct {
	Suite string
	// Cache defaults to cache.Default().
	Cache *cache.Cache
	// Apt runs apt-cache/apt-get/dpkg; nil means the real commands.
	Apt Runner
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

func (d *Debian) Name() string { return "debian:" + d.Suite }

func (d *Debian) run() Runner {
	if d.Apt != nil {
		return d.Apt
	}
	return execRunner
}

// packageSet names the packages of one Debian kernel ABI.
type packageSet struct {
	abi     string // e.g. 6.1.0-56
	flavour string // amd64
	version string // Debian version, e.g. 6.1.192-2
}

func (p packageSet) release() string { return p.abi + "-" + p.flavour }

func (p packageSet) packages() []Package {
	series := p.abi
	if i := strings.Index(series, ".0-"); i > 0 {
		series = series[:i]
	}
	names := []string{
		"linux-image-" + p.release() + "-unsigned",
		"linux-headers-" + p.release(),
		"linux-headers-" + p.abi + "-common",
		"linux-kbuild-" + series,
	}
	var out []Package
	for _, n := range names {
		out = append(out, Package{Name: n, Version: p.version})
	}
	return out
}

var abiDep = regexp.MustCompile(`linux-image-(\d+\.\d+\.\d+-\d+)-([a-z0-9]+)(?:-unsigned)? \(= ([^)]+)\)`)

// resolve finds the ABI and version the suite's linux-image-amd64
// metapackage currently points at.
func (d *Debian) resolve(ctx context.Context) (packageSet, error) {
	if host := hostCodename(); host != "" && host != d.Suite {
		return packageSet{}, fmt.Errorf("kernel debian:%s: this machine's apt sources are for %s; fetching other suites' kernels is not supported yet (use debian:%s)", d.Suite, host, host)
	}
	out, err := d.run()(ctx, "", nil, "apt-cache", "show", "linux-image-amd64")
	if err != nil {
		return packageSet{}, fmt.Errorf("look up Debian's kernel package: %w\n(is the package list current? run: apt-get update)", err)
	}
	// apt-cache show prints every known version; the first stanza is the
	// candidate apt would install.
	stanza, _, _ := bytes.Cut(out, []byte("\n\n"))
	m := abiDep.FindSubmatch(stanza)
	if m == nil {
		return packageSet{}, fmt.Errorf("cannot find the kernel ABI in linux-image-amd64's dependencies:\n%s", stanza)
	}
	return packageSet{abi: string(m[1]), flavour: string(m[2]), version: string(m[3])}, nil
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

// Kernel fetches and unpacks the kernel, or returns the cached one.
func (d *Debian) Kernel(ctx context.Context, progress io.Writer) (*Kernel, error) {
	c := d.Cache
	if c == nil {
		var err error
		if c, err = cache.Default(); err != nil {
			return nil, err
		}
	}
	set, err := d.resolve(ctx)
	if err != nil {
		return nil, err
	}
	pkgs := set.packages()
	var keyParts []string
	for _, p := range pkgs {
		keyParts = append(keyParts, p.Name+"="+p.Version)
	}
	dir, err := c.Get(ctx, cache.Key("kernel-debian-"+set.release(), keyParts...), func(ctx context.Context, dir string) error {
		return d.fetch(ctx, dir, set, pkgs, progress)
	})
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", d.Name(), err)
	}
	return readManifest(dir)
}

func (d *Debian) fetch(ctx context.Context, dir string, set packageSet, pkgs []Package, progress io.Writer) error {
	debs := filepath.Join(dir, "debs")
	root := filepath.Join(dir, "root")
	for _, p := range []string{debs, root} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
	}
	var args []string
	// Downloading as root, apt would otherwise try to drop to the _apt user,
	// who cannot write into the cache.
	args = append(args, "-o", "APT::Sandbox::User=root", "download")
	for _, p := range pkgs {
		args = append(args, p.Name+"="+p.Version)
	}
	if progress != nil {
		fmt.Fprintf(progress, "Fetching kernel %s (%s) into %s\n", set.release(), set.version, dir)
	}
	if _, err := d.run()(ctx, debs, progress, "apt-get", args...); err != nil {
		return fmt.Errorf("download kernel packages: %w\n(check access to the Debian archive and run: apt-get update)", err)
	}
	files, err := filepath.Glob(filepath.Join(debs, "*.deb"))
	if err != nil || len(files) != len(pkgs) {
		return fmt.Errorf("expected %d kernel packages in %s, found %d", len(pkgs), debs, len(files))
	}
	for _, f := range files {
		if _, err := d.run()(ctx, "", nil, "dpkg", "-x", f, root); err != nil {
			return fmt.Errorf("unpack %s: %w", filepath.Base(f), err)
		}
		os.Remove(f) // the unpacked tree is what we keep
	}
	os.Remove(debs)

	rel := set.release()
	build := filepath.Join(root, "usr/src/linux-headers-"+rel)
	if err := relocateHeaders(build); err != nil {
		return err
	}
	modules := filepath.Join(root, "lib/modules", rel)
	if _, err := d.run()(ctx, "", nil, "depmod", "-b", root, rel); err != nil {
		return fmt.Errorf("index modules: %w (is kmod installed?)", err)
	}
	k := &Kernel{
		Release:    rel,
		Image:      filepath.Join(root, "boot/vmlinuz-"+rel),
		ModulesDir: modules,
		BuildDir:   build,
		Provider:   d.Name(),
		Packages:   pkgs,
	}
	return writeManifest(dir, k)
}

// relocateHeaders points Debian's per-flavour headers Makefile, which
// includes the common headers by absolute /usr/src path, at the unpacked copy.
func relocateHeaders(build string) error {
	mk := filepath.Join(build, "Makefile")
	b, err := os.ReadFile(mk)
	if err != nil {
		return fmt.Errorf("kernel headers: %w", err)
	}
	// make -C runs in the headers directory, and the cache entry moves
	// after it is built, so the path must be relative.
	fixed := bytes.ReplaceAll(b, []byte("include /usr/src/"), []byte("include ../"))
	if bytes.Equal(fixed, b) {
		return fmt.Errorf("kernel headers: %s does not include /usr/src/...; unknown header layout", mk)
	}
	return os.WriteFile(mk, fixed, 0o644)
}
