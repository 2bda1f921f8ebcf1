package modules

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"layer45/harness/cache"
	"layer45/harness/kernels"
	"layer45/harness/repo"
	"layer45/vmimages/guest"
)

// fakeKbuild is a stand-in for a kernel's build directory: make -C it
// M=DIR modules "builds" each DIR/*.c into a .ko, fails with the line of a
// #error, writes a Module.symvers of the EXPORT_SYMBOLs, and echoes what
// it was given, so the build logic is tested without a kernel.
const fakeKbuild = `modules:
	@test -n "$(M)"
	@cd $(M) && if grep -Hn '#error' *.c >&2; then exit 1; fi
	@cd $(M) && for c in *.c; do touch $${c%.c}.ko; done
	@cd $(M) && : > Module.symvers && for s in $$(sed -n 's/^EXPORT_SYMBOL[_GPL]*(\(.*\));/\1/p' *.c); do printf '0x0\t%s\t%s\tEXPORT_SYMBOL\t\n' $$s $(M) >> Module.symvers; done
	@echo "built $(notdir $(M)) KCFLAGS=[$(KCFLAGS)] EXTRA=[$(notdir $(KBUILD_EXTRA_SYMBOLS))] CONFIG_LAYER4_5=[$(CONFIG_LAYER4_5)]"
`

const coreSource = "EXPORT_SYMBOL_GPL(register_customization);\nEXPORT_SYMBOL_GPL(unregister_customization);\n"

func write(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	for f, data := range files {
		p := filepath.Join(dir, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
	}
	return dir
}

// fakeTree is a tree laid out like kernel/, with build products a
// developer left in it, plus more files.
func fakeTree(t *testing.T, more map[string]string) string {
	src := write(t, t.TempDir(), map[string]string{
		"Makefile":                         "# not used by the harness\n",
		"layer4_5/Kbuild":                  "",
		"layer4_5/layer4_5.c":              coreSource,
		"include/layer4_5/customization.h": "",
		"customizations/Kbuild":            "",
		"customizations/tag.c":             "/* tag */\n",
		"stale.o":                          "junk",
		"customizations/tag.mod.c":         "/* modpost */",
	})
	return write(t, src, more)
}

// testEnv clears the settings' variables and L45_MODULES for the test.
func testEnv(t *testing.T) {
	for _, v := range []string{"L45_MODULES", "L45_TREE_CORE_DIR", "L45_TREE_CORE_MODULE", "L45_TREE_CORE_MAKE", "L45_TREE_HEADER", "L45_TREE_CUSTOMIZATIONS", "L45_TREE_NETLINK"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
}

func fakeKernel(t *testing.T) *kernels.Kernel {
	return &kernels.Kernel{Release: "6.1.0-test", BuildDir: write(t, t.TempDir(), map[string]string{"Makefile": fakeKbuild})}
}

func newCache(t *testing.T) *cache.Cache {
	c, err := cache.Open(t.TempDir())
	require.NoError(t, err)
	return c
}

func TestBuildCachesByContentAndCollectsModules(t *testing.T) {
	testEnv(t)
	c, k := newCache(t), fakeKernel(t)
	src := fakeTree(t, nil)

	s, err := Build(context.Background(), c, k, src)
	require.NoError(t, err)
	require.Contains(t, s.Log, "built layer4_5 KCFLAGS=[] EXTRA=[] CONFIG_LAYER4_5=[m]")
	require.Regexp(t, `built customizations KCFLAGS=\[-I/\S+/include -I/\S+/tree/include/layer4_5\] EXTRA=\[Module.symvers\]`, s.Log)
	require.Equal(t, guest.CoreModule, s.CoreName())
	require.Equal(t, guest.DefaultNetlink, s.Netlink)
	core, err := s.Path(guest.CoreModule)
	require.NoError(t, err)
	require.FileExists(t, core)
	_, err = s.Path("tag")
	require.NoError(t, err)
	_, err = s.Path("nosuch")
	require.ErrorContains(t, err, "built: layer4_5 tag")

	write(t, src, map[string]string{"stale.o": "other junk", "customizations/tag.mod.c": "/* again */"})
	again, err := Build(context.Background(), c, k, src)
	require.NoError(t, err)
	require.Equal(t, s.Dir, again.Dir, "build products must not change the cache key")

	write(t, src, map[string]string{"customizations/tag.c": "/* changed */\n"})
	changed, err := Build(context.Background(), c, k, src)
	require.NoError(t, err)
	require.NotEqual(t, s.Dir, changed.Dir, "a source change must rebuild")

	t.Setenv("L45_TREE_NETLINK", "genl:L45")
	other, err := Build(context.Background(), c, k, src)
	require.NoError(t, err)
	require.NotEqual(t, changed.Dir, other.Dir, "other settings build anew")
	require.Equal(t, guest.Netlink{Family: "L45"}, other.Netlink)
}

func TestCompileFailureCarriesTheCompilerOutput(t *testing.T) {
	testEnv(t)
	src := fakeTree(t, map[string]string{"customizations/tag.c": "/* tag */\n#error expected ; before }\n"})
	_, err := Build(context.Background(), newCache(t), fakeKernel(t), src)
	var ce *CompileError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "the customization modules ("+filepath.Join(src, "customizations")+")", ce.What)
	require.ErrorContains(t, err, "failed to compile against kernel 6.1.0-test")
	require.ErrorContains(t, err, "tag.c:2:#error expected ; before }")
}

// A tree laid out otherwise (flat, its header named otherwise, no
// customizations of its own) builds through its settings: the project's
// customization modules get its header under the name they include.
func TestAnotherTreesLayoutComesFromItsSettings(t *testing.T) {
	testEnv(t)
	src := write(t, t.TempDir(), map[string]string{
		"Makefile":         "obj-m += l45core.o\n",
		"l45core.c":        coreSource,
		"common_structs.h": "struct customization_node;\n",
		"l45tree.json":     `{"core_dir": ".", "core_module": "l45core", "core_make": [], "header": "common_structs.h", "netlink": "genl:L45"}`,
	})
	s, err := Build(context.Background(), newCache(t), fakeKernel(t), src)
	require.NoError(t, err)
	require.Equal(t, "l45core", s.CoreName())
	require.Equal(t, guest.Netlink{Family: "L45"}, s.Netlink)
	core, err := s.Path(guest.CoreModule)
	require.NoError(t, err)
	require.Equal(t, "l45core.ko", filepath.Base(core))
	root, err := repo.Root()
	require.NoError(t, err)
	require.Contains(t, s.Log, "# customization modules from "+filepath.Join(root, "kernel", "customizations"))
	require.Contains(t, s.Log, "built tree KCFLAGS=[] EXTRA=[] CONFIG_LAYER4_5=[]")
	_, err = s.Path("tag")
	require.NoError(t, err, "the project's customization modules are built")
	shim, err := os.ReadFile(filepath.Join(s.Dir, "include/layer4_5/customization.h"))
	require.NoError(t, err)
	require.Contains(t, string(shim), `#include "../../tree/common_structs.h"`)
}

func TestACoreThatIsNotWhatTheSettingsSay(t *testing.T) {
	testEnv(t)
	tests := []struct {
		name, core, wantErr string
	}{
		{"no exports", "EXPORT_SYMBOL(register_customization);\n",
			"Layer 4.5 tree {tree}: its core layer4_5.ko exports no unregister_customization (its Module.symvers): customization modules link against them, so the core must EXPORT_SYMBOL or EXPORT_SYMBOL_GPL them"},
		{"another name", "", // layer4_5.c is replaced by main.c
			"Layer 4.5 tree {tree}: building layer4_5 made no layer4_5.ko (it made: main.ko); set core_module in l45tree.json or L45_TREE_CORE_MODULE to the core's name, or core_dir/core_make so that the core is built"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fakeTree(t, map[string]string{"layer4_5/layer4_5.c": tt.core})
			if tt.core == "" {
				require.NoError(t, os.Rename(filepath.Join(src, "layer4_5/layer4_5.c"), filepath.Join(src, "layer4_5/main.c")))
			}
			_, err := Build(context.Background(), newCache(t), fakeKernel(t), src)
			var ce *CoreError
			require.ErrorAs(t, err, &ce)
			require.EqualError(t, err, strings.ReplaceAll(tt.wantErr, "{tree}", src))
		})
	}
}

// A kernel with Layer 4.5 built in gets only the customization modules,
// against its own exports.
func TestBuiltinKernelBuildsNoCore(t *testing.T) {
	testEnv(t)
	k := fakeKernel(t)
	k.Layer45Builtin = true
	s, err := Build(context.Background(), newCache(t), k, fakeTree(t, nil))
	require.NoError(t, err)
	require.NotContains(t, s.Log, "built layer4_5")
	require.Contains(t, s.Log, "built customizations KCFLAGS=[-I")
	require.Contains(t, s.Log, "EXTRA=[] CONFIG")
	_, err = s.Path(guest.CoreModule)
	require.ErrorContains(t, err, "module layer4_5 was not built")
}

func TestUserModuleSources(t *testing.T) {
	testEnv(t)
	user := write(t, t.TempDir(), map[string]string{"Kbuild": "obj-m += mine.o\n", "mine.c": "/* mine */\n"})
	t.Setenv("L45_MODULES", user)
	c, k, src := newCache(t), fakeKernel(t), fakeTree(t, nil)
	s, err := Build(context.Background(), c, k, src)
	require.NoError(t, err)
	mine, err := s.Path("mine")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(s.Dir, "user", "mine.ko"), mine)
	require.Contains(t, s.Log, "built user KCFLAGS=[-I")

	write(t, user, map[string]string{"mine.c": "#error mine is broken\n"})
	_, err = Build(context.Background(), c, k, src)
	var ce *CompileError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "L45_MODULES ("+user+")", ce.What)
	require.ErrorContains(t, err, "mine.c:1:#error mine is broken")

	write(t, user, map[string]string{"mine.c": "", "tag.c": ""})
	_, err = Build(context.Background(), c, k, src)
	require.ErrorContains(t, err, "two modules named tag")

	t.Setenv("L45_MODULES", t.TempDir())
	_, err = Build(context.Background(), c, k, src)
	require.ErrorContains(t, err, "holds neither module sources (a Kbuild or Makefile) nor prebuilt .ko files")
}

func TestUserPrebuiltModulesMustMatchTheKernel(t *testing.T) {
	testEnv(t)
	// modinfo's answers: the kernel's own module and the user's files.
	vermagic := map[string]string{}
	old := modinfo
	modinfo = func(_ context.Context, field, file string) (string, error) {
		if v, ok := vermagic[filepath.Base(file)]; ok && field == "vermagic" {
			return v, nil
		}
		return "", errors.New("modinfo: " + file + ": not faked")
	}
	t.Cleanup(func() { modinfo = old })

	const want = "6.1.0-test SMP preempt mod_unload modversions"
	k := fakeKernel(t)
	k.ModulesDir = write(t, t.TempDir(), map[string]string{"modules.dep": "kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko\nkernel/net/core/failover.ko:\n"})
	vermagic["virtio_net.ko"] = want
	user := write(t, t.TempDir(), map[string]string{"good.ko": "", "bad.ko": ""})
	vermagic["good.ko"] = want
	vermagic["bad.ko"] = "6.1.0-other SMP preempt mod_unload modversions"
	t.Setenv("L45_MODULES", user)
	c, src := newCache(t), fakeTree(t, nil)

	_, err := Build(context.Background(), c, k, src)
	var ve *VermagicError
	require.ErrorAs(t, err, &ve)
	require.EqualError(t, err, `L45_MODULES: `+filepath.Join(user, "bad.ko")+` was built for "6.1.0-other SMP preempt mod_unload modversions" but kernel 6.1.0-test takes "`+want+`": rebuild it against that kernel's headers, or put its sources in L45_MODULES to have them built`)

	vermagic["bad.ko"] = "6.1.0-test SMP mod_unload"
	_, err = Build(context.Background(), c, k, src)
	require.ErrorAs(t, err, &ve, "the options count too, not only the release")

	require.NoError(t, os.Remove(filepath.Join(user, "bad.ko")))
	s, err := Build(context.Background(), c, k, src)
	require.NoError(t, err)
	good, err := s.Path("good")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(user, "good.ko"), good, "a prebuilt module is loaded from where it is")

	// A kernel without modules of its own: the release must match.
	write(t, k.ModulesDir, map[string]string{"modules.dep": ""})
	_, err = Build(context.Background(), c, k, src)
	require.NoError(t, err)
	vermagic["good.ko"] = "6.1.0-other SMP"
	_, err = Build(context.Background(), c, k, src)
	require.EqualError(t, err, `L45_MODULES: `+filepath.Join(user, "good.ko")+` was built for "6.1.0-other SMP" but kernel 6.1.0-test takes "6.1.0-test": rebuild it against that kernel's headers, or put its sources in L45_MODULES to have them built`)
}

func TestTheToolchainIsRecordedAndKeysTheBuild(t *testing.T) {
	testEnv(t)
	c, src := newCache(t), fakeTree(t, nil)
	host := &kernels.Toolchain{Compiler: "gcc-12 (Debian 12.2.0-14) 12.2.0", Found: "gcc-12 (Debian 12.2.0-14) 12.2.0"}
	k := fakeKernel(t)
	k.Toolchain = host
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
	testEnv(t)
	k := &kernels.Kernel{Release: "7.2.0-test", BuildDir: "/usr/src/linux-headers-7.2.0-test",
		Toolchain: &kernels.Toolchain{Compiler: "gcc-16 (Debian 16.2.0-4) 16.2.0", Found: "gcc-16 (Debian 16.2.0-4) 16.2.0", Root: "/nonexistent/root"}}
	_, err := Build(context.Background(), newCache(t), k, fakeTree(t, nil))
	require.ErrorContains(t, err, "needs /usr/src/linux-headers-7.2.0-test inside the cache")
}
