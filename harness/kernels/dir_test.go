package kernels

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A packed kernel, copied out as Pack says, boots through dir:PATH with
// only what the guest needs, and keeps what it was made of.
func TestPackedKernelComesBackThroughDir(t *testing.T) {
	src := t.TempDir()
	write := func(rel, data string) string {
		p := filepath.Join(src, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
		return p
	}
	k := &Kernel{
		Release:    "6.1.0-9-amd64",
		Image:      write("root/boot/vmlinuz-6.1.0-9-amd64", "bzImage"),
		ModulesDir: filepath.Join(src, "root/lib/modules/6.1.0-9-amd64"),
		BuildDir:   filepath.Join(src, "headers"),
		Provider:   "debian:bookworm",
		Packages:   []Package{{Name: "linux-image-6.1.0-9-amd64-unsigned", Version: "6.1.99-1"}},
	}
	write("root/lib/modules/6.1.0-9-amd64/modules.dep", "kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko\n")
	write("root/lib/modules/6.1.0-9-amd64/kernel/drivers/net/virtio_net.ko", "net")
	write("root/lib/modules/6.1.0-9-amd64/kernel/net/core/failover.ko", "failover")
	write("root/lib/modules/6.1.0-9-amd64/kernel/fs/unused.ko", "not needed")
	write("headers/.config", "CONFIG_MODULE_DECOMPRESS=y\n")

	files, manifest, err := Pack(k, []string{"kernel/net/core/failover.ko", "kernel/drivers/net/virtio_net.ko"})
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"vmlinuz":                           k.Image,
		"modules/6.1.0-9-amd64/modules.dep": filepath.Join(k.ModulesDir, "modules.dep"),
		"modules/6.1.0-9-amd64/kernel/net/core/failover.ko":      filepath.Join(k.ModulesDir, "kernel/net/core/failover.ko"),
		"modules/6.1.0-9-amd64/kernel/drivers/net/virtio_net.ko": filepath.Join(k.ModulesDir, "kernel/drivers/net/virtio_net.ko"),
		"build/.config": filepath.Join(k.BuildDir, ".config"),
	}, files, "no modules.builtin here, and no module the guest does not load")

	dst := t.TempDir()
	for to, from := range files {
		data, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dst, to)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dst, to), data, 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dst, manifestName), manifest, 0o644))

	p, err := Parse("dir:"+dst, nil, "")
	require.NoError(t, err)
	require.Equal(t, "dir:"+dst, p.Name())
	got, err := p.Kernel(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dst, "vmlinuz"), got.Image)
	require.Equal(t, filepath.Join(dst, "modules/6.1.0-9-amd64"), got.ModulesDir)
	require.Equal(t, filepath.Join(dst, "build"), got.BuildDir)
	require.Equal(t, k.Packages, got.Packages)
	require.Equal(t, "debian:bookworm", got.Provider, "the kernel still says where it came from")

	_, err = (&Dir{Path: t.TempDir()}).Kernel(context.Background(), nil)
	require.ErrorContains(t, err, "kernel.json")
}
