package kernels

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"layer45/harness/cache"
)

// Toolchain is where out-of-tree modules for a kernel are compiled: with
// the compiler the kernel itself was built with, which its headers record
// (CONFIG_CC_VERSION_TEXT).
//
// The decision, per kernel:
//
//   - A kernel of this machine's own Debian suite (debian:bookworm and
//     debian:bookworm:6.12 on a bookworm machine, both built with bookworm's
//     gcc-12) and a kernel built here from source use the host's compiler:
//     it is that compiler.
//   - A kernel of another suite uses a build root of that suite, made once
//     with mmdebstrap (variant minbase plus the compiler package the
//     kernel's headers depend on, make, libc6-dev and the runtime
//     dependencies of its kbuild tools) and cached; builds run chrooted into
//     it in a private mount namespace with the harness cache bound at its
//     own path. A host compiler of another release is not that compiler, and
//     newer suites' compilers cannot run on an older host at all (sid's
//     gcc-16 and kbuild tools need glibc 2.38, bookworm has 2.36); bullseye's
//     gcc-10 could run on bookworm but would have to be installed into the
//     host, mixing suites.
//
// A kernel whose compiler cannot be provided is an error naming what is
// missing; there is no fall-back to another compiler.
type Toolchain struct {
	// Compiler is the kernel's CONFIG_CC_VERSION_TEXT.
	Compiler string `json:"compiler"`
	// Found is the first line of --version of the compiler modules are
	// built with: equal to Compiler, or the same gcc release in another
	// Debian revision (see Note).
	Found string `json:"found"`
	// Root is the build root builds are chrooted into; "" is the host.
	Root string `json:"root,omitempty"`
	// Packages are the compiler packages used, with their versions.
	Packages []Package `json:"packages,omitempty"`
	// Note says why Found differs from Compiler, if it does.
	Note string `json:"note,omitempty"`
}

// String describes the toolchain in one line for logs and cache keys.
func (t *Toolchain) String() string {
	where := "on the host"
	if t.Root != "" {
		where = "in build root " + t.Root
	}
	s := t.Found + " " + where
	if t.Note != "" {
		s += " (" + t.Note + ")"
	}
	return s
}

// Command returns a command running name with args in dir with this
// toolchain. On the host that is the plain command. In a build root it is
// chrooted there in a private mount namespace where binds (host
// directories, e.g. the harness cache holding the kernel headers and the
// build) appear at their own paths, with /dev and /proc mounted; the
// environment inside is reset to a plain PATH.
func (t *Toolchain) Command(ctx context.Context, dir string, binds []string, name string, args ...string) *exec.Cmd {
	argv := t.argv(dir, binds, name, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if t == nil || t.Root == "" {
		cmd.Dir = dir
	}
	return cmd
}

// chrootScript runs in a private mount namespace: it binds the given host
// directories and /dev into the build root, mounts /proc and runs the
// command chrooted with a clean environment.
const chrootScript = `set -e
root=$1; dir=$2; shift 2
while [ "$1" != -- ]; do mkdir -p "$root$1"; mount --bind "$1" "$root$1"; shift; done; shift
mount --bind /dev "$root/dev"
mount -t proc proc "$root/proc"
exec chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LC_ALL=C \
	/bin/sh -c 'cd "$0" && exec "$@"' "$dir" "$@"`

func (t *Toolchain) argv(dir string, binds []string, name string, args ...string) []string {
	if t == nil || t.Root == "" {
		return append([]string{name}, args...)
	}
	a := []string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", chrootScript, "l45-chroot", t.Root, dir}
	a = append(a, binds...)
	a = append(a, "--", name)
	return append(a, args...)
}

// ccText matches a gcc's version text: program, Debian version, release.
var ccText = regexp.MustCompile(`^(\S*gcc\S*) \(([^)]*)\) (\d+)\.\d+`)

// kernelCompiler reads CONFIG_CC_VERSION_TEXT from a kernel's build
// directory (.config, else include/generated/autoconf.h).
func kernelCompiler(buildDir string) (string, error) {
	for _, f := range []struct{ path, prefix string }{
		{".config", "CONFIG_CC_VERSION_TEXT="},
		{"include/generated/autoconf.h", "#define CONFIG_CC_VERSION_TEXT "},
	} {
		b, err := os.ReadFile(filepath.Join(buildDir, f.path))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, f.prefix); ok {
				return strings.Trim(v, `"`), nil
			}
		}
	}
	return "", fmt.Errorf("kernel build directory %s records no compiler (no CONFIG_CC_VERSION_TEXT in .config or autoconf.h)", buildDir)
}

// kernelGCC is the kernel's compiler text and its parts (ccText's
// submatches); a compiler other than gcc is an error.
func kernelGCC(buildDir string) (string, []string, error) {
	text, err := kernelCompiler(buildDir)
	if err != nil {
		return "", nil, err
	}
	m := ccText.FindStringSubmatch(text)
	if m == nil {
		return "", nil, fmt.Errorf("the kernel was built with %q, which the harness does not know how to provide (only gcc)", text)
	}
	return text, m, nil
}

// compare checks that found (a --version first line) is the compiler of
// text (CONFIG_CC_VERSION_TEXT): the same program and gcc major release.
// A different Debian revision of that release is accepted with a note.
func compare(text, found string) (note string, err error) {
	want := ccText.FindStringSubmatch(text)
	if want == nil {
		return "", fmt.Errorf("the kernel was built with %q, which the harness does not know how to provide (only gcc)", text)
	}
	got := ccText.FindStringSubmatch(found)
	switch {
	case found == text:
		return "", nil
	case got == nil || got[1] != want[1] || got[3] != want[3]:
		return "", fmt.Errorf("the kernel was built with %q but the compiler found is %q", text, found)
	}
	return fmt.Sprintf("kernel built with %s, modules with %s", want[2], got[2]), nil
}

// hostToolchain checks that this machine has the kernel's compiler (and,
// for Debian kernels, the packages its kbuild tools need: needed, as
// package names).
func hostToolchain(ctx context.Context, run Runner, buildDir string, needed []string) (*Toolchain, error) {
	text, m, err := kernelGCC(buildDir)
	if err != nil {
		return nil, err
	}
	var missing []string
	if len(needed) > 0 {
		// dpkg-query fails on unknown names but still lists the others.
		out, _ := run(ctx, "", nil, "dpkg-query", append([]string{"-W", "-f", "${Package} ${db:Status-Status}\n"}, needed...)...)
		installed := map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			if n, st, ok := strings.Cut(l, " "); ok && st == "installed" {
				n, _, _ = strings.Cut(n, ":")
				installed[n] = true
			}
		}
		for _, p := range needed {
			if !installed[p] {
				missing = append(missing, p)
			}
		}
	}
	prog := m[1]
	out, err := run(ctx, "", nil, prog, "--version")
	if err != nil {
		missing = append([]string{"gcc-" + m[3] + " (the program " + prog + ")"}, missing...)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("this kernel was built with %q; modules for it are built with this machine's own compiler, but it lacks: %s (install them with apt-get install)", text, strings.Join(missing, ", "))
	}
	t := &Toolchain{Compiler: text, Found: firstLine(strings.TrimSpace(string(out)))}
	if t.Note, err = compare(text, t.Found); err != nil {
		return nil, err
	}
	return t, nil
}

// compilerPackage maps the compiler dependency of a Debian headers package
// (linux-compiler-gcc-10-x86, gcc-14, gcc-16-for-host) to what a build root
// installs; without one, the gcc-N the version text names.
func compilerPackage(dep, text string) (string, error) {
	if m := regexp.MustCompile(`^linux-compiler-(gcc-\d+)-x86$`).FindStringSubmatch(dep); m != nil {
		return m[1], nil
	}
	if dep != "" {
		return dep, nil
	}
	if m := ccText.FindStringSubmatch(text); m != nil {
		return "gcc-" + m[3], nil
	}
	return "", fmt.Errorf("cannot tell which compiler package builds modules for a kernel built with %q", text)
}

// buildRootBase is what every build root has besides the compiler and the
// kbuild tools' libraries: make, the C library's headers, and perl, which
// W=1 builds run (scripts/kernel-doc) and minbase carries only in part.
var buildRootBase = []string{"make", "libc6-dev", "perl"}

// buildRootManifest records a build root's packages.
const buildRootManifest = "buildroot.json"

type buildRootInfo struct {
	Suite    string    `json:"suite"`
	Include  []string  `json:"include"`
	Packages []Package `json:"packages"`
}

// buildRootToolchain returns the toolchain for a kernel of another suite:
// the cached build root of suite with compiler and extra packages, made
// with mmdebstrap if missing, checked against the kernel's compiler.
func buildRootToolchain(ctx context.Context, c *cache.Cache, a *aptConfig, run Runner, buildDir, compilerDep string, extra []string, progress io.Writer) (*Toolchain, error) {
	text, m, err := kernelGCC(buildDir)
	if err != nil {
		return nil, err
	}
	pkg, err := compilerPackage(compilerDep, text)
	if err != nil {
		return nil, err
	}
	st, err := a.show(ctx, pkg)
	if err != nil {
		return nil, fmt.Errorf("the kernel was built with %q, but Debian %s no longer has its compiler package: %w", text, a.suite, err)
	}
	include := append([]string{pkg}, buildRootBase...)
	include = append(include, extra...)
	sort.Strings(include)
	include = dedupe(include)
	key := cache.Key("buildroot-"+a.suite, append(include, "compiler="+pkg+"="+st["Version"], "variant=minbase")...)
	dir, err := c.Get(ctx, key, func(ctx context.Context, dir string) error {
		return makeBuildRoot(ctx, a, run, dir, include, progress)
	})
	if err != nil {
		return nil, fmt.Errorf("build root of Debian %s with %s (for a kernel built with %q): %w", a.suite, pkg, text, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, buildRootManifest))
	if err != nil {
		return nil, fmt.Errorf("build root %s is damaged (%v): remove it and run again", dir, err)
	}
	var info buildRootInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("build root %s has a corrupt %s: remove it and run again", dir, buildRootManifest)
	}
	t := &Toolchain{Compiler: text, Root: filepath.Join(dir, "root")}
	argv := t.argv("/", nil, m[1], "--version")
	out, err := run(ctx, "", nil, argv[0], argv[1:]...)
	if err != nil {
		return nil, fmt.Errorf("the kernel was built with %q, but the build root %s cannot run %s: %w", text, t.Root, m[1], err)
	}
	t.Found = firstLine(strings.TrimSpace(string(out)))
	if t.Note, err = compare(text, t.Found); err != nil {
		return nil, fmt.Errorf("build root %s: %w", t.Root, err)
	}
	for _, p := range info.Packages {
		if p.Name == pkg || strings.HasPrefix(p.Name, "gcc-"+m[3]) || strings.HasPrefix(p.Name, "cpp-"+m[3]) ||
			strings.HasPrefix(p.Name, "binutils") || p.Name == "make" || p.Name == "libc6-dev" {
			t.Packages = append(t.Packages, p)
		}
	}
	return t, nil
}

func dedupe(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// makeBuildRoot runs mmdebstrap into dir/root and records the packages it
// installed.
func makeBuildRoot(ctx context.Context, a *aptConfig, run Runner, dir string, include []string, progress io.Writer) error {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return fmt.Errorf("mmdebstrap is not installed: it makes the build root that provides the kernel's compiler (install it: apt-get install mmdebstrap)")
	}
	if !a.private() {
		return fmt.Errorf("a build root is made from a suite's private apt configuration")
	}
	// mmdebstrap runs apt with its own configuration: hand it the machine's
	// Acquire options (proxies, validity checks) so it reaches the archive
	// the way the system's apt does.
	opts, err := hostAcquireOptions(ctx, run)
	if err != nil {
		return err
	}
	optFile := filepath.Join(dir, "acquire.conf")
	if err := os.WriteFile(optFile, []byte(opts), 0o644); err != nil {
		return err
	}
	if progress != nil {
		fmt.Fprintf(progress, "Making a Debian %s build root with %s in %s (once; takes a few minutes)\n", a.suite, strings.Join(include, " "), dir)
	}
	root := filepath.Join(dir, "root")
	args := []string{"--variant=minbase", "--include=" + strings.Join(include, ","), "--aptopt=" + optFile,
		`--aptopt=APT::Sandbox::User "root"`,
		a.suite, root, a.sourcesFile()}
	if _, err := run(ctx, "", progress, "mmdebstrap", args...); err != nil {
		return fmt.Errorf("mmdebstrap: %w", err)
	}
	out, err := run(ctx, "", nil, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f", "${Package} ${Version}\n")
	if err != nil {
		return fmt.Errorf("list the build root's packages: %w", err)
	}
	info := buildRootInfo{Suite: a.suite, Include: include}
	s := bufio.NewScanner(strings.NewReader(string(out)))
	for s.Scan() {
		if n, v, ok := strings.Cut(s.Text(), " "); ok {
			info.Packages = append(info.Packages, Package{Name: n, Version: v})
		}
	}
	b, err := json.MarshalIndent(&info, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, buildRootManifest), append(b, '\n'), 0o644)
}

// hostAcquireOptions is the system's Acquire configuration, minus what
// says which indexes to fetch (the host's DEP-11 targets, languages,
// changelog URLs) rather than how to reach the archive.
func hostAcquireOptions(ctx context.Context, run Runner) (string, error) {
	out, err := run(ctx, "", nil, "apt-config", "dump", "--no-empty", "Acquire")
	if err != nil {
		return "", fmt.Errorf("read this machine's apt options: %w", err)
	}
	var b strings.Builder
	b.WriteString("// This machine's Acquire options, for mmdebstrap's apt.\n")
	for _, l := range strings.Split(string(out), "\n") {
		skip := false
		for _, p := range []string{"Acquire::IndexTargets", "Acquire::Languages", "Acquire::Changelogs", "Acquire::CompressionTypes", "Acquire::cdrom"} {
			if strings.HasPrefix(l, p) {
				skip = true
			}
		}
		if !skip && strings.HasPrefix(l, "Acquire::") {
			b.WriteString(l + "\n")
		}
	}
	return b.String(), nil
}
