package modules

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"layer45/harness/cache"
	"layer45/harness/kernels"
	"layer45/vmimages/guest"
)

// A stand-in kernel/ tree whose Makefile "builds" modules by touching .ko
// files, so the caching and reporting logic is tested without a kernel.
func fakeTree(t *testing.T, makefile string) string {
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "customizations"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "Makefile"), []byte(makefile), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "customizations", "tag.c"), []byte("/* tag */\n"), 0o644))
	// A build product left in the tree must not change the key.
	require.NoError(t, os.WriteFile(filepath.Join(src, "stale.o"), []byte("junk"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "customizations", "tag.mod.c"), []byte("/* modpost */"), 0o644))
	return src
}

const goodMakefile = "all:\n\t@test -n \"$(KDIR)\"\n\t@touch layer4_5.ko customizations/tag.ko\n\t@echo built\n"

func TestBuildCachesByContentAndCollectsModules(t *testing.T) {
	c, err := cache.Open(t.TempDir())
	require.NoError(t, err)
	k := &kernels.Kernel{Release: "6.1.0-test", BuildDir: "/nonexistent/kdir"}
	src := fakeTree(t, goodMakefile)

	s, err := Build(context.Background(), c, k, src)
	require.NoError(t, err)
	require.Contains(t, s.Log, "built")
	core, err := s.Path(guest.CoreModule)
	require.NoError(t, err)
	require.FileExists(t, core)
	_, err = s.Path("tag")
	require.NoError(t, err)
	_, err = s.Path("nosuch")
	require.ErrorContains(t, err, "built: layer4_5 tag")

	require.NoError(t, os.WriteFile(filepath.Join(src, "stale.o"), []byte("other junk"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "customizations", "tag.mod.c"), []byte("/* again */"), 0o644))
	again, err := Build(context.Background(), c, k, src)
	require.NoError(t, err)
	require.Equal(t, s.Dir, again.Dir, "build products must not change the cache key")

	require.NoError(t, os.WriteFile(filepath.Join(src, "customizations", "tag.c"), []byte("/* changed */\n"), 0o644))
	changed, err := Build(context.Background(), c, k, src)
	require.NoError(t, err)
	require.NotEqual(t, s.Dir, changed.Dir, "a source change must rebuild")
}

func TestCompileFailureCarriesTheCompilerOutput(t *testing.T) {
	c, err := cache.Open(t.TempDir())
	require.NoError(t, err)
	k := &kernels.Kernel{Release: "6.1.0-test", BuildDir: "/kdir"}
	src := fakeTree(t, "all:\n\t@echo 'tag.c:3:1: error: expected ; before }' >&2; exit 1\n")
	_, err = Build(context.Background(), c, k, src)
	require.ErrorContains(t, err, "failed to compile against kernel 6.1.0-test")
	require.ErrorContains(t, err, "tag.c:3:1: error: expected ; before }")
}

func TestTheToolchainIsRecordedAndKeysTheBuild(t *testing.T) {
	c, err := cache.Open(t.TempDir())
	require.NoError(t, err)
	src := fakeTree(t, goodMakefile)
	host := &kernels.Toolchain{Compiler: "gcc-12 (Debian 12.2.0-14) 12.2.0", Found: "gcc-12 (Debian 12.2.0-14) 12.2.0"}
	k := &kernels.Kernel{Release: "6.1.0-test", BuildDir: "/kdir", Toolchain: host}
	s, err := Build(context.Background(), c, k, src)
	require.NoError(t, err)
	require.Contains(t, s.Log, "# kernel 6.1.0-test built with: gcc-12 (Debian 12.2.0-14) 12.2.0\n")

	other := *host
	other.Found = "gcc-12 (Debian 12.2.0-15) 12.2.0"
	k2 := *k
	k2.Toolchain = &other
	s2, err := Build(context.Background(), c, &k2, src)
	require.NoError(t, err)
	require.NotEqual(t, s.Dir, s2.Dir, "another compiler builds anew")
}

func TestABuildRootBuildNeedsTheKernelInTheCache(t *testing.T) {
	c, err := cache.Open(t.TempDir())
	require.NoError(t, err)
	k := &kernels.Kernel{Release: "7.2.0-test", BuildDir: "/usr/src/linux-headers-7.2.0-test",
		Toolchain: &kernels.Toolchain{Compiler: "gcc-16 (Debian 16.2.0-4) 16.2.0", Found: "gcc-16 (Debian 16.2.0-4) 16.2.0", Root: "/nonexistent/root"}}
	_, err = Build(context.Background(), c, k, fakeTree(t, goodMakefile))
	require.ErrorContains(t, err, "needs /usr/src/linux-headers-7.2.0-test inside the cache")
}
