package kernels

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"layer45/harness/cache"
)

// fakeApt plays apt-cache, apt-get, dpkg -x, dpkg-query, depmod, the
// compilers and mmdebstrap well enough for the providers' logic, recording
// every command. archive maps a package name to its apt-cache show output.
type fakeApt struct {
	archive  map[string]string
	cc       string // what the compiler's --version prints
	commands []string
}

const ccText612 = "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"

func (f *fakeApt) run(_ context.Context, dir string, _ io.Writer, name string, args ...string) ([]byte, error) {
	f.commands = append(f.commands, name+" "+strings.Join(args, " "))
	switch name {
	case "apt-cache":
		var out []string
		for _, a := range args[indexOf(args, "show")+1:] {
			if st, ok := f.archive[a]; ok {
				out = append(out, strings.TrimSpace(st))
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("apt-cache show: exit status 100\nE: No packages found")
		}
		return []byte(strings.Join(out, "\n\n") + "\n"), nil
	case "apt-get":
		switch {
		case contains(args, "indextargets"):
			return []byte("file:///srv/mirror/debian-security/ bookworm-security\nfile:///srv/mirror/debian/ bookworm\nfile:///srv/mirror/debian/ bookworm-updates\n"), nil
		case contains(args, "download"):
			for _, a := range args {
				if n, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(n, "linux-") {
					os.WriteFile(filepath.Join(dir, n+"_"+v+"_amd64.deb"), nil, 0o644)
				}
			}
		}
	case "dpkg":
		f.unpack(args[2], strings.Split(filepath.Base(args[1]), "_")[0])
	case "dpkg-query":
		var out string
		for _, a := range args[3:] {
			out += a + " installed\n"
		}
		return []byte(out), nil
	case "gcc-12", "x86_64-linux-gnu-gcc-16", "unshare":
		return []byte(f.cc + "\nCopyright\n"), nil
	case "apt-config":
		return []byte("Acquire::Check-Valid-Until \"false\";\nAcquire::IndexTargets::deb::DEP-11::MetaKey \"x\";\n"), nil
	case "mmdebstrap":
		os.MkdirAll(args[len(args)-2], 0o755)
	}
	return nil, nil
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// unpack lays out what the named package holds, for the two packaging
// generations (6.1: /lib/modules, /boot; 7.x: /usr/lib/modules).
func (f *fakeApt) unpack(root, pkg string) {
	write := func(p, content string) {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(content), 0o644)
	}
	switch {
	case pkg == "linux-image-6.1.0-56-amd64-unsigned":
		write("boot/vmlinuz-6.1.0-56-amd64", "bz")
		os.MkdirAll(filepath.Join(root, "lib/modules/6.1.0-56-amd64"), 0o755)
	case pkg == "linux-headers-6.1.0-56-amd64":
		write("usr/src/linux-headers-6.1.0-56-amd64/Makefile", "include /usr/src/linux-headers-6.1.0-56-common/Makefile\n")
		write("usr/src/linux-headers-6.1.0-56-amd64/.config", `CONFIG_CC_VERSION_TEXT="`+ccText612+`"`+"\n")
	case pkg == "linux-binary-unsigned-7.2.13+deb14-amd64":
		write("usr/lib/modules/7.2.13+deb14-amd64/vmlinuz.unsigned", "bz")
	case pkg == "linux-headers-7.2.13+deb14-amd64":
		write("usr/src/linux-headers-7.2.13+deb14-amd64/Makefile",
			"KBUILD_OUTPUT=/usr/src/linux-headers-7.2.13+deb14-amd64\ninclude /usr/src/linux-headers-7.2.13+deb14-common/Makefile\n")
		write("usr/src/linux-headers-7.2.13+deb14-amd64/.config", `CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-16 (Debian 16.2.0-4) 16.2.0"`+"\n")
	}
}

func bookworm() map[string]string {
	return map[string]string{
		"linux-image-amd64": `Package: linux-image-amd64
Version: 6.1.192-2
Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)

Package: linux-image-amd64
Version: 6.1.176-1
Depends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)
`,
		"linux-image-6.1.0-56-amd64-unsigned": "Package: linux-image-6.1.0-56-amd64-unsigned\nVersion: 6.1.192-2\nDepends: kmod\n",
		"linux-headers-6.1.0-56-amd64": "Package: linux-headers-6.1.0-56-amd64\nVersion: 6.1.192-2\n" +
			"Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86\n",
		"linux-headers-6.1.0-56-common": "Package: linux-headers-6.1.0-56-common\nVersion: 6.1.192-2\n",
		"linux-kbuild-6.1":              "Package: linux-kbuild-6.1\nVersion: 6.1.192-2\nDepends: libc6 (>= 2.34), libelf1 (>= 0.142), libssl3 (>= 3.0.0)\n",
		"linux-image-6.12-amd64":        "Package: linux-image-6.12-amd64\nVersion: 6.12.117-1~deb12u1\nDepends: linux-image-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1)\n",
	}
}

func TestDebianFetchesTheCandidateKernelOnceAndRecordsVersions(t *testing.T) {
	c, err := cache.Open(t.TempDir())
	require.NoError(t, err)
	fake := &fakeApt{archive: bookworm(), cc: ccText612}
	d := &Debian{Suite: DefaultDebianSuite, Cache: c, Apt: fake.run, Host: DefaultDebianSuite}
	k, err := d.Kernel(context.Background(), nil)
	require.NoError(t, err)

	require.Equal(t, "6.1.0-56-amd64", k.Release)
	require.Equal(t, []Package{
		{"linux-image-6.1.0-56-amd64-unsigned", "6.1.192-2"},
		{"linux-headers-6.1.0-56-amd64", "6.1.192-2"},
		{"linux-headers-6.1.0-56-common", "6.1.192-2"},
		{"linux-kbuild-6.1", "6.1.192-2"},
	}, k.Packages)
	mk, err := os.ReadFile(filepath.Join(k.BuildDir, "Makefile"))
	require.NoError(t, err)
	require.Equal(t, "include ../linux-headers-6.1.0-56-common/Makefile\n", string(mk), "headers must not point at /usr/src")
	require.FileExists(t, k.Image)
	all := strings.Join(fake.commands, "\n")
	require.Contains(t, all, "depmod -b")
	require.NotContains(t, all, "Dir::Etc::sourcelist", "the machine's own suite uses the system's apt configuration")
	require.NotContains(t, all, "update")
	// Bookworm's kernels are built with bookworm's gcc-12: the host's.
	require.Equal(t, &Toolchain{Compiler: ccText612, Found: ccText612}, k.Toolchain)
	require.Contains(t, all, "dpkg-query -W -f ${Package} ${db:Status-Status}\n libc6 libelf1 libssl3")
	require.Contains(t, all, "apt-cache -o APT::Sandbox::User=root -o Dir::Cache::pkgcache="+filepath.Join(c.Root(), ".apt", "system", "pkgcache.bin")+" show")

	// A second call is served from the cache: nothing is fetched again.
	fake.commands = nil
	k2, err := d.Kernel(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, k, k2)
	require.NotContains(t, strings.Join(fake.commands, "\n"), "download")
	require.NotContains(t, strings.Join(fake.commands, "\n"), "dpkg -x")
}

func TestAMissingHostCompilerIsNamed(t *testing.T) {
	c, err := cache.Open(t.TempDir())
	require.NoError(t, err)
	fake := &fakeApt{archive: bookworm(), cc: ccText612}
	run := func(ctx context.Context, dir string, w io.Writer, name string, args ...string) ([]byte, error) {
		if name == "gcc-12" {
			return nil, errors.New("exec: \"gcc-12\": executable file not found in $PATH")
		}
		return fake.run(ctx, dir, w, name, args...)
	}
	_, err = (&Debian{Suite: DefaultDebianSuite, Cache: c, Apt: run, Host: DefaultDebianSuite}).Kernel(context.Background(), nil)
	require.ErrorContains(t, err, "no compiler for its modules")
	require.ErrorContains(t, err, "gcc-12 (the program gcc-12)")

	fake.cc = "gcc-12 (Debian 12.3.0-1) 12.3.0"
	_, err = (&Debian{Suite: DefaultDebianSuite, Cache: c, Apt: fake.run, Host: DefaultDebianSuite}).Kernel(context.Background(), nil)
	require.NoError(t, err, "another Debian revision of the same gcc release builds compatible modules")
	fake.cc = "gcc-13 (Debian 13.1.0-1) 13.1.0"
	_, err = (&Debian{Suite: DefaultDebianSuite, Cache: c, Apt: fake.run, Host: DefaultDebianSuite}).Kernel(context.Background(), nil)
	require.ErrorContains(t, err, "but the compiler found is")
}

func sid() map[string]string {
	const v = "7.2.13-1"
	const rel = "7.2.13+deb14-amd64"
	st := func(pkg, deps string) string {
		return "Package: " + pkg + "\nVersion: " + v + "\nDepends: " + deps + "\n"
	}
	return map[string]string{
		"linux-image-amd64":                 st("linux-image-amd64", "linux-base-amd64 (= 7.2.13-1), linux-image-"+rel+" (= "+v+")"),
		"linux-image-" + rel:                st("linux-image-"+rel, "dracut | initramfs-tools (>= 0.120+deb8u2), linux-base-"+rel+" (= "+v+"), linux-binary-"+rel+" (= "+v+"), linux-modules-"+rel+" (= "+v+")"),
		"linux-binary-" + rel:               st("linux-binary-"+rel, "linux-base-"+rel),
		"linux-binary-unsigned-" + rel:      st("linux-binary-unsigned-"+rel, "linux-base-"+rel),
		"linux-base-" + rel:                 st("linux-base-"+rel, "base-files"),
		"linux-modules-" + rel:              st("linux-modules-"+rel, "kmod, linux-base-"+rel+" (= "+v+")"),
		"linux-headers-" + rel:              st("linux-headers-"+rel, "gcc-16-for-host, linux-base (>= 4.12~), linux-base-"+rel+" (= "+v+"), linux-headers-7.2.13+deb14-common (= "+v+"), linux-kbuild-7.2.13+deb14"),
		"linux-headers-7.2.13+deb14-common": st("linux-headers-7.2.13+deb14-common", "base-files"),
		"linux-kbuild-7.2.13+deb14":         st("linux-kbuild-7.2.13+deb14", "pahole, libc6 (>= 2.38), libelf1t64 (>= 0.144)"),
		"gcc-16-for-host":                   "Package: gcc-16-for-host\nVersion: 16.2.0-4\n",
	}
}

func TestOtherSuitesUseAPrivateAptConfigurationAndTheirOwnCompiler(t *testing.T) {
	keyring := filepath.Join(t.TempDir(), "keyring.gpg")
	require.NoError(t, os.WriteFile(keyring, nil, 0o644))
	c, err := cache.Open(t.TempDir())
	require.NoError(t, err)
	fake := &fakeApt{archive: sid(), cc: "x86_64-linux-gnu-gcc-16 (Debian 16.2.0-4) 16.2.0"}
	d := &Debian{Suite: "sid", Series: "7.2", Cache: c, Apt: fake.run, Host: DefaultDebianSuite, Keyring: keyring}
	require.Equal(t, "debian:sid:7.2", d.Name())
	k, err := d.Kernel(context.Background(), nil)
	require.NoError(t, err)

	// The private configuration: the system's archive URL, the keyring,
	// nothing of the system's sources or state.
	apt := filepath.Join(c.Root(), ".apt", "sid")
	src, err := os.ReadFile(filepath.Join(apt, "sources.sources"))
	require.NoError(t, err)
	require.Equal(t, "Types: deb\nURIs: file:///srv/mirror/debian/\nSuites: sid\nComponents: main\nSigned-By: "+DebianKeyring+"\nTargets: Packages\n", string(src))
	all := strings.Join(fake.commands, "\n")
	for _, o := range []string{"-c " + apt + "/apt.conf", "-o Dir::Etc::sourcelist=" + apt + "/sources.sources",
		"-o Dir::Etc::sourceparts=" + apt + "/empty.d", "-o Dir::State::Lists=" + apt + "/lists",
		"-o Dir::Cache=" + apt + "/cache", "-o Dir::State::status=" + apt + "/status"} {
		require.Contains(t, all, o)
	}
	require.Contains(t, all, "/cache update\n")

	// 7.x packaging: unsigned binary, modules and base files apart.
	require.Equal(t, "7.2.13+deb14-amd64", k.Release)
	var names []string
	for _, p := range k.Packages {
		names = append(names, p.Name)
		require.Equal(t, "7.2.13-1", p.Version)
	}
	require.Equal(t, []string{
		"linux-binary-unsigned-7.2.13+deb14-amd64", "linux-base-7.2.13+deb14-amd64", "linux-modules-7.2.13+deb14-amd64",
		"linux-headers-7.2.13+deb14-amd64", "linux-headers-7.2.13+deb14-common", "linux-kbuild-7.2.13+deb14",
	}, names)
	require.Equal(t, "vmlinuz.unsigned", filepath.Base(k.Image))
	require.Contains(t, k.ModulesDir, "usr/lib/modules/7.2.13+deb14-amd64")
	mk, err := os.ReadFile(filepath.Join(k.BuildDir, "Makefile"))
	require.NoError(t, err)
	require.Equal(t, "KBUILD_OUTPUT=$(CURDIR)\ninclude ../linux-headers-7.2.13+deb14-common/Makefile\n", string(mk))

	// sid's gcc-16 comes from a build root of sid.
	tc := k.Toolchain
	require.NotNil(t, tc)
	require.Contains(t, tc.Root, "buildroot-sid-")
	require.Equal(t, "x86_64-linux-gnu-gcc-16 (Debian 16.2.0-4) 16.2.0", tc.Found)
	require.Contains(t, all, "mmdebstrap --variant=minbase --include=gcc-16-for-host,libc6,libc6-dev,libelf1t64,make,pahole,perl")
	acq, err := os.ReadFile(filepath.Join(filepath.Dir(tc.Root), "acquire.conf"))
	require.NoError(t, err)
	require.Contains(t, string(acq), `Acquire::Check-Valid-Until "false";`)
	require.NotContains(t, string(acq), "IndexTargets")

	// Fresh lists are not fetched again; the build root is reused.
	fake.commands = nil
	_, err = d.Kernel(context.Background(), nil)
	require.NoError(t, err)
	all = strings.Join(fake.commands, "\n")
	require.NotContains(t, all, " update")
	require.NotContains(t, all, "mmdebstrap")
}

func TestASeriesTheSuiteDoesNotCarryIsRefused(t *testing.T) {
	a := &aptConfig{suite: "bookworm", run: (&fakeApt{archive: bookworm()}).run}
	_, err := (&Debian{Suite: "bookworm", Series: "7.2"}).resolve(context.Background(), a)
	require.ErrorContains(t, err, "Debian bookworm has no 7.2 kernel")
	// 6.1 is bookworm's default kernel; 6.12 has its own metapackage.
	set, err := (&Debian{Suite: "bookworm", Series: "6.1"}).resolve(context.Background(), a)
	require.NoError(t, err)
	require.Equal(t, "6.1.0-56-amd64", set.release)
	_, err = (&Debian{Suite: "bookworm", Series: "6.12"}).resolve(context.Background(), a)
	require.ErrorContains(t, err, "linux-image-6.12.117+deb12-amd64: no such package", "the metapackage is followed")
}

func TestSourcesOfASuite(t *testing.T) {
	s := systemArchives{main: "file:///srv/mirror/debian/", security: "file:///srv/mirror/debian-security/"}
	require.Contains(t, s.sources("bullseye"), "Suites: bullseye bullseye-updates\n")
	require.Contains(t, s.sources("bullseye"), "URIs: file:///srv/mirror/debian-security/\nSuites: bullseye-security\n")
	require.NotContains(t, s.sources("sid"), "security")
	require.NotContains(t, s.sources("sid"), "updates")
}

func TestCompilerComparison(t *testing.T) {
	note, err := compare("gcc-10 (Debian 10.2.1-6) 10.2.1 20210110", "gcc-10 (Debian 10.2.1-6) 10.2.1 20210110")
	require.NoError(t, err)
	require.Empty(t, note)
	note, err = compare("gcc-16 (Debian 16.2.0-4) 16.2.0", "gcc-16 (Debian 16.2.0-5) 16.2.0")
	require.NoError(t, err)
	require.Equal(t, "kernel built with Debian 16.2.0-4, modules with Debian 16.2.0-5", note)
	_, err = compare("gcc-16 (Debian 16.2.0-4) 16.2.0", "gcc-15 (Debian 15.1.0-4) 15.1.0")
	require.Error(t, err)
	_, err = compare("Debian clang version 19.1.7 (3)", "gcc-12 (Debian 12.2.0-14) 12.2.0")
	require.ErrorContains(t, err, "only gcc")
	p, err := compilerPackage("linux-compiler-gcc-10-x86", "")
	require.NoError(t, err)
	require.Equal(t, "gcc-10", p)
	p, err = compilerPackage("", "gcc-14 (Debian 14.2.0-19) 14.2.0")
	require.NoError(t, err)
	require.Equal(t, "gcc-14", p)
}

func TestBuildRootCommandBindsAndChroots(t *testing.T) {
	host := (*Toolchain)(nil).argv("/src", []string{"/cache"}, "make", "-j2")
	require.Equal(t, []string{"make", "-j2"}, host)
	tc := &Toolchain{Root: "/cache/buildroot-sid-x/root"}
	argv := tc.argv("/src", []string{"/cache"}, "make", "-j2")
	require.Equal(t, "unshare", argv[0])
	require.Equal(t, []string{"l45-chroot", "/cache/buildroot-sid-x/root", "/src", "/cache", "--", "make", "-j2"}, argv[len(argv)-7:])
}

func TestDamagedCacheEntryIsReportedNotBooted(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, manifestName), []byte("{not json"), 0o644))
	_, err := readManifest(dir)
	require.ErrorContains(t, err, "corrupt")
	require.ErrorContains(t, err, "remove the directory")

	require.NoError(t, writeManifest(dir, &Kernel{Release: "x", Image: filepath.Join(dir, "missing")}))
	_, err = readManifest(dir)
	require.ErrorContains(t, err, "incomplete")
}

func TestParseRejectsUnknownKernelsClearly(t *testing.T) {
	for spec, name := range map[string]string{
		"":                     "debian:" + DefaultDebianSuite,
		"debian":               "debian:" + DefaultDebianSuite,
		"debian:":              "debian:" + DefaultDebianSuite,
		"debian:trixie":        "debian:trixie",
		"debian:bookworm:6.12": "debian:bookworm:6.12",
		"debian:sid:7.2":       "debian:sid:7.2",
		"source:6.1":           "source:6.1",
		"source:6.1:debug":     "source:6.1:debug",
	} {
		p, err := Parse(spec, nil, "/repo/kernel")
		require.NoError(t, err, spec)
		require.Equal(t, name, p.Name())
	}
	for _, bad := range []string{"gentoo:9", "source", "source:6.1:fast", "debian:a:b", "debian:sid:7", "debian:Sid", "debian:sid:7.2:x", ":sid"} {
		_, err := Parse(bad, nil, "")
		require.ErrorContains(t, err, fmt.Sprintf("unknown kernel %q", bad))
	}
}

func TestKernelConfig(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".config"), []byte(
		"# comment\nCONFIG_PREEMPT_COUNT=y\nCONFIG_KVM=m\nCONFIG_LOG_BUF_SHIFT=17\nCONFIG_LOCALVERSION=\"-x\"\n# CONFIG_KASAN is not set\n"), 0o644))
	conf, err := (&Kernel{Release: "6.1.0-test", BuildDir: dir}).Config()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"CONFIG_PREEMPT_COUNT": "y", "CONFIG_KVM": "m", "CONFIG_LOG_BUF_SHIFT": "17", "CONFIG_LOCALVERSION": `"-x"`}, conf)
	_, err = (&Kernel{Release: "6.1.0-test", BuildDir: t.TempDir()}).Config()
	require.ErrorContains(t, err, "the configuration of kernel 6.1.0-test")
}
