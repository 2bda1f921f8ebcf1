package kernels

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"layer45/harness/cache"
)

// fakeBzImage is the start of a bzImage: a setup header pointing at
// version, and the string at the offset the header gives (+0x200).
func fakeBzImage(version string) []byte {
	b := make([]byte, 0x400)
	le := binary.LittleEndian
	le.PutUint16(b[bootFlagOff:], 0xAA55)
	copy(b[headerMagicOff:], "HdrS")
	le.PutUint16(b[protocolOff:], 0x20f)
	le.PutUint16(b[kernelVersionOff:], 0x100)
	b = append(b[:0x300], append([]byte(version), 0)...)
	return append(b, make([]byte, 64)...) // the kernel's code follows
}

func TestImageVersion(t *testing.T) {
	const debian = "6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"
	corrupt := func(off int, data ...byte) []byte {
		b := fakeBzImage(debian)
		copy(b[off:], data)
		return b
	}
	tests := []struct {
		name    string
		data    []byte
		want    string // the release; the version is checked for good images
		wantErr string // {path} is the file
	}{
		{"debian", fakeBzImage(debian), "6.1.0-18-amd64", ""},
		{"a release with a plus", fakeBzImage("6.12.0-rc1+ (me@host) #3 SMP"), "6.12.0-rc1+", ""},
		{"too short", []byte("MZ"), "", "{path} is not a bzImage whose version can be read: shorter than a setup header (unexpected EOF)"},
		{"no boot flag", corrupt(bootFlagOff, 0, 0), "", "{path} is not a bzImage whose version can be read: boot flag 0x0000, want 0xaa55"},
		{"no magic", corrupt(headerMagicOff, 'E', 'L', 'F', '!'), "", `{path} is not a bzImage whose version can be read: header magic "ELF!", want "HdrS" (a kernel older than boot protocol 2.00, or not a kernel)`},
		{"old protocol", corrupt(protocolOff, 0x01, 0x01), "", "{path} is not a bzImage whose version can be read: boot protocol 0x101 predates the version string (2.00)"},
		{"no version", corrupt(kernelVersionOff, 0, 0), "", "{path} is not a bzImage whose version can be read: its setup header points at no version string"},
		{"past the end", corrupt(kernelVersionOff, 0xff, 0x7f), "", "{path} is not a bzImage whose version can be read: version string at 0x81ff is past the end (EOF)"},
		{"not text", fakeBzImage("6.1\x01"), "", `{path} is not a bzImage whose version can be read: version string at 0x300 is not text: "6.1\x01"`},
		{"empty", fakeBzImage(""), "", "{path} is not a bzImage whose version can be read: no NUL-terminated version string at 0x300"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bzImage")
			require.NoError(t, os.WriteFile(path, tt.data, 0o644))
			rel, err := ImageRelease(path)
			if tt.wantErr != "" {
				var ie *ImageError
				require.ErrorAs(t, err, &ie)
				require.EqualError(t, err, strings.ReplaceAll(tt.wantErr, "{path}", path))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, rel)
			v, err := ImageVersion(path)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(string(tt.data[0x300:]), v))
		})
	}
}

// Every bzImage in the cache (real kernels) reads as its release. The
// default kernel is there once `make setup` has run, as before every
// guest test; -short runs without it.
func TestImageVersionOfCachedKernels(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the kernels make setup fetches; skipped with -short")
	}
	c, err := cache.Default()
	require.NoError(t, err)
	images, _ := filepath.Glob(filepath.Join(c.Root(), "kernel-debian-*", "root", "boot", "vmlinuz-*"))
	require.NotEmpty(t, images, "no Debian kernel in the cache %s: run make setup", c.Root())
	for _, img := range images {
		rel, err := ImageRelease(img)
		require.NoError(t, err)
		require.Equal(t, strings.TrimPrefix(filepath.Base(img), "vmlinuz-"), rel)
	}
}

func TestParsePathSpec(t *testing.T) {
	syntax := "; want " + pathSyntax
	tests := []struct {
		spec    string
		want    Path
		wantErr string
	}{
		{spec: "path:/k/bzImage?modules=/k/lib/modules/6.12.0+&build=/k/src",
			want: Path{Image: "/k/bzImage", Modules: "/k/lib/modules/6.12.0+", Build: "/k/src"}},
		{spec: "path:/k//bzImage?modules=/k/lib/modules/6.1.0/", want: Path{Image: "/k/bzImage", Modules: "/k/lib/modules/6.1.0"}},
		{spec: "path:/k/bzImage?build=/k/src&modules=/m", want: Path{Image: "/k/bzImage", Modules: "/m", Build: "/k/src"}},
		{spec: "path:", wantErr: `kernel spec "path:": the image "" is not an absolute path` + syntax},
		{spec: "path:bzImage?modules=/m", wantErr: `kernel spec "path:bzImage?modules=/m": the image "bzImage" is not an absolute path` + syntax},
		{spec: "path:/k/bzImage", wantErr: `kernel spec "path:/k/bzImage": no modules folder (the guest loads its virtio drivers from it)` + syntax},
		{spec: "path:/k/bzImage?modules=lib/modules/6.1", wantErr: `kernel spec "path:/k/bzImage?modules=lib/modules/6.1": modules="lib/modules/6.1" is not an absolute path` + syntax},
		{spec: "path:/k/bzImage?modules=/m&modules=/n", wantErr: `kernel spec "path:/k/bzImage?modules=/m&modules=/n": modules given twice` + syntax},
		{spec: "path:/k/bzImage?modules=/m&headers=/h", wantErr: `kernel spec "path:/k/bzImage?modules=/m&headers=/h": unknown parameter "headers"` + syntax},
		{spec: "path:/k/bzImage?modules", wantErr: `kernel spec "path:/k/bzImage?modules": modules="" is not an absolute path` + syntax},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			p, err := Parse(tt.spec, nil, "")
			if tt.wantErr != "" {
				var se *SpecError
				require.ErrorAs(t, err, &se)
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, &tt.want, p)
			again, err := Parse(p.Name(), nil, "")
			require.NoError(t, err, "the name is a spec")
			require.Equal(t, p, again)
		})
	}
}

// userKernel lays out a kernel the user built: image, modules folder
// (with the build link make modules_install makes) and build tree, whose
// compiler is this machine's gcc.
func userKernel(t *testing.T, release string) (image, modules, build string) {
	gcc, err := exec.Command("gcc", "--version").Output()
	require.NoError(t, err, "gcc (build-essential, installed by make setup)")
	cc, _, _ := strings.Cut(string(gcc), "\n")
	dir := t.TempDir()
	image = filepath.Join(dir, "arch/x86/boot/bzImage")
	modules = filepath.Join(dir, "root/lib/modules", release)
	build = filepath.Join(dir, "src")
	for f, data := range map[string]string{
		image:                                                  string(fakeBzImage(release + " (me@host) #1 SMP")),
		filepath.Join(modules, "modules.dep"):                  "kernel/drivers/net/virtio_net.ko:\n",
		filepath.Join(build, "Module.symvers"):                 "0x1\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n",
		filepath.Join(build, ".config"):                        "CONFIG_CC_VERSION_TEXT=\"" + cc + "\"\n",
		filepath.Join(build, "include/generated/utsrelease.h"): "#define UTS_RELEASE \"" + release + "\"\n",
	} {
		require.NoError(t, os.MkdirAll(filepath.Dir(f), 0o755))
		require.NoError(t, os.WriteFile(f, []byte(data), 0o644))
	}
	require.NoError(t, os.Symlink(build, filepath.Join(modules, "build")))
	return image, modules, build
}

func TestPathKernelIsCachedAndKeyedByItsFiles(t *testing.T) {
	image, modules, build := userKernel(t, "6.12.0-mine+")
	c, err := cache.Open(t.TempDir())
	require.NoError(t, err)
	p, err := Parse("path:"+image+"?modules="+modules, c, "")
	require.NoError(t, err)
	k, err := p.Kernel(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, "6.12.0-mine+", k.Release)
	require.Equal(t, p.Name(), k.Provider)
	require.False(t, k.Layer45Builtin)
	require.NotNil(t, k.Toolchain)
	require.True(t, strings.HasPrefix(k.Image, c.Root()), "the image is copied into the cache: %s", k.Image)
	require.FileExists(t, filepath.Join(k.ModulesDir, "modules.dep"))
	require.FileExists(t, filepath.Join(k.BuildDir, "Module.symvers"), "build defaults to the modules folder's build link")
	require.Len(t, k.Packages, 2)
	require.Equal(t, image, k.Packages[0].Name)
	require.Equal(t, filepath.Join(modules, "build", "Module.symvers"), k.Packages[1].Name)

	again, err := p.Kernel(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, k.Image, again.Image, "cached")

	// A rebuild with Layer 4.5 built in is another kernel, whose modules
	// are built anew (Kernel.String keys them).
	require.NoError(t, os.WriteFile(filepath.Join(build, "Module.symvers"), []byte("0x1\tregister_customization\tvmlinux\tEXPORT_SYMBOL_GPL\t\n"), 0o644))
	rebuilt, err := p.Kernel(context.Background(), nil)
	require.NoError(t, err)
	require.NotEqual(t, k.Image, rebuilt.Image)
	require.True(t, rebuilt.Layer45Builtin)
	require.NotEqual(t, k.String(), rebuilt.String())

	require.NoError(t, os.WriteFile(image, fakeBzImage("6.12.0-mine+ (me@host) #2 SMP"), 0o644))
	again, err = p.Kernel(context.Background(), nil)
	require.NoError(t, err)
	require.NotEqual(t, rebuilt.Image, again.Image)
	require.NotEqual(t, rebuilt.String(), again.String())
}

func TestPathKernelsThatDoNotBelongTogether(t *testing.T) {
	image, modules, build := userKernel(t, "6.1.0-mine")
	other, otherModules, _ := userKernel(t, "6.1.0-other")
	headers := t.TempDir()
	tests := []struct {
		name, spec, wantErr string
		setup               func()
	}{
		{name: "not a bzImage", spec: "path:" + modules + "/modules.dep?modules=" + modules,
			wantErr: modules + "/modules.dep is not a bzImage whose version can be read: shorter than a setup header (unexpected EOF)"},
		{name: "modules of another release", spec: "path:" + image + "?modules=" + otherModules,
			wantErr: "the modules folder " + otherModules + " is for release 6.1.0-other but the image is 6.1.0-mine"},
		{name: "no modules.dep", spec: "path:" + image + "?modules=" + filepath.Dir(modules),
			wantErr: filepath.Dir(modules) + " has no modules.dep (run depmod for release 6.1.0-mine, or give the folder make modules_install made)"},
		{name: "headers without Module.symvers", spec: "path:" + image + "?modules=" + modules + "&build=" + headers,
			wantErr: headers + " is not a built kernel tree or its headers (no Module.symvers): give the folder the kernel was built in"},
		{name: "no build link", spec: "path:" + other + "?modules=" + otherModules,
			setup:   func() { os.Remove(filepath.Join(otherModules, "build")) },
			wantErr: otherModules + "/build is not a built kernel tree or its headers (no Module.symvers): set build= the folder the kernel was built in"},
		{name: "a build tree of another release", spec: "path:" + image + "?modules=" + modules,
			setup: func() {
				os.WriteFile(filepath.Join(build, "include/generated/utsrelease.h"), []byte("#define UTS_RELEASE \"6.1.0-old\"\n"), 0o644)
			},
			wantErr: "the build tree " + modules + "/build is for release \"6.1.0-old\" but the image is 6.1.0-mine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			p, err := Parse(tt.spec, nil, "")
			require.NoError(t, err)
			_, err = p.Kernel(context.Background(), nil)
			var se *SpecError
			require.True(t, errors.As(err, &se), "%v", err)
			require.EqualError(t, err, `kernel spec "`+p.Name()+`": `+tt.wantErr)
		})
	}
}

// A kernel built from source takes Layer 4.5 in with the tree's
// builtin/apply.sh: a tree of another layout is told so, before any
// download.
func TestSourceKernelNeedsTheTreesApplyScript(t *testing.T) {
	apt := func(_ context.Context, _ string, _ io.Writer, name string, args ...string) ([]byte, error) {
		return []byte("Package: linux-source-6.1\nVersion: 6.1.99-1\n"), nil
	}
	tree := t.TempDir()
	_, err := (&Source{Series: "6.1", Layer45: tree, Apt: apt}).Kernel(context.Background(), nil)
	require.EqualError(t, err, "kernel source:6.1 builds Layer 4.5 in with the tree's builtin/apply.sh, which "+tree+" lacks: test a tree of another layout as a module (debian:..., path:...)")
}
