package kernels

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"layer45/harness/cache"
)

// fakeApt plays apt-cache, apt-get download, dpkg -x and depmod well enough
// for the provider's logic, recording every command.
type fakeApt struct {
	show     string
	commands []string
}

func (f *fakeApt) run(_ context.Context, dir string, _ io.Writer, name string, args ...string) ([]byte, error) {
	f.commands = append(f.commands, name+" "+strings.Join(args, " "))
	switch name {
	case "apt-cache":
		return []byte(f.show), nil
	case "apt-get":
		for _, a := range args {
			if strings.Contains(a, "=") && strings.HasPrefix(a, "linux-") {
				os.WriteFile(filepath.Join(dir, strings.ReplaceAll(a, "=", "_")+".deb"), nil, 0o644)
			}
		}
	case "dpkg":
		root := args[2]
		if strings.Contains(args[1], "linux-image") {
			os.MkdirAll(filepath.Join(root, "boot"), 0o755)
			os.WriteFile(filepath.Join(root, "boot/vmlinuz-6.1.0-56-amd64"), []byte("bz"), 0o644)
			os.MkdirAll(filepath.Join(root, "lib/modules/6.1.0-56-amd64"), 0o755)
		}
		if strings.Contains(args[1], "linux-headers-6.1.0-56-amd64") {
			d := filepath.Join(root, "usr/src/linux-headers-6.1.0-56-amd64")
			os.MkdirAll(d, 0o755)
			os.WriteFile(filepath.Join(d, "Makefile"), []byte("include /usr/src/linux-headers-6.1.0-56-common/Makefile\n"), 0o644)
		}
	}
	return nil, nil
}

const showOutput = `Package: linux-image-amd64
Version: 6.1.192-2
Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)

Package: linux-image-amd64
Version: 6.1.176-1
Depends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)
`

func TestDebianFetchesTheCandidateKernelOnceAndRecordsVersions(t *testing.T) {
	if hostCodename() != DefaultDebianSuite {
		t.Fatalf("this test assumes a %s host", DefaultDebianSuite)
	}
	c, err := cache.Open(t.TempDir())
	require.NoError(t, err)
	fake := &fakeApt{show: showOutput}
	d := &Debian{Suite: DefaultDebianSuite, Cache: c, Apt: fake.run}
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
	require.Contains(t, strings.Join(fake.commands, "\n"), "depmod -b")

	// A second call is served from the cache: only the version lookup runs.
	fake.commands = nil
	k2, err := d.Kernel(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, k, k2)
	require.Equal(t, []string{"apt-cache show linux-image-amd64"}, fake.commands)
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
		"":                 "debian:" + DefaultDebianSuite,
		"debian":           "debian:" + DefaultDebianSuite,
		"debian:trixie":    "debian:trixie",
		"source:6.1":       "source:6.1",
		"source:6.1:debug": "source:6.1:debug",
	} {
		p, err := Parse(spec, nil, "/repo/kernel")
		require.NoError(t, err, spec)
		require.Equal(t, name, p.Name())
	}
	for _, bad := range []string{"gentoo:9", "source", "source:6.1:fast", "debian:a:b"} {
		_, err := Parse(bad, nil, "")
		require.ErrorContains(t, err, fmt.Sprintf("unknown kernel %q", bad))
	}
}

func TestOtherSuitesAreRefusedWithAReason(t *testing.T) {
	d := &Debian{Suite: "sid", Apt: (&fakeApt{show: showOutput}).run}
	_, err := d.resolve(context.Background())
	require.ErrorContains(t, err, "not supported yet")
}
