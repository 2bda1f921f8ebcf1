package initramfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type cpioEntry struct {
	mode uint32
	body string
}

// readCPIO parses a newc archive the way the kernel's initramfs unpacker
// does, to check what WriteCPIO produced.
func readCPIO(t *testing.T, data []byte) map[string]cpioEntry {
	t.Helper()
	out := map[string]cpioEntry{}
	r := bytes.NewReader(data)
	align := func() {
		off, _ := r.Seek(0, io.SeekCurrent)
		if off%4 != 0 {
			r.Seek(4-off%4, io.SeekCurrent)
		}
	}
	for {
		hdr := make([]byte, 110)
		_, err := io.ReadFull(r, hdr)
		require.NoError(t, err)
		require.Equal(t, "070701", string(hdr[:6]))
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			require.NoError(t, err)
			return v
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := make([]byte, namesize)
		_, err = io.ReadFull(r, name)
		require.NoError(t, err)
		align()
		body := make([]byte, size)
		_, err = io.ReadFull(r, body)
		require.NoError(t, err)
		align()
		n := strings.TrimRight(string(name), "\x00")
		if n == "TRAILER!!!" {
			return out
		}
		out[n] = cpioEntry{mode: uint32(mode), body: string(body)}
	}
}

func TestWriteCPIORoundTrip(t *testing.T) {
	host := filepath.Join(t.TempDir(), "prog")
	require.NoError(t, os.WriteFile(host, []byte("#!/bin/sh\necho hi\n"), 0o755))
	im := New()
	im.AddBytes("/etc/a/b.conf", []byte("abc"), 0o600)
	im.AddFile("/usr/bin/prog", host, 0o755)
	im.AddSymlink("/bin/sh", "/bin/busybox")
	im.AddDir("/proc", 0o755)
	var buf bytes.Buffer
	require.NoError(t, im.WriteCPIO(&buf))
	got := readCPIO(t, buf.Bytes())

	require.Equal(t, cpioEntry{mode: cpioModeFile | 0o600, body: "abc"}, got["etc/a/b.conf"])
	require.Equal(t, cpioEntry{mode: cpioModeFile | 0o755, body: "#!/bin/sh\necho hi\n"}, got["usr/bin/prog"])
	require.Equal(t, cpioEntry{mode: cpioModeSymlink | 0o777, body: "/bin/busybox"}, got["bin/sh"])
	for _, d := range []string{"etc", "etc/a", "usr", "usr/bin", "bin", "proc"} {
		require.Equal(t, uint32(cpioModeDir|0o755), got[d].mode, d)
	}
}

func TestDigestChangesWithContentModeAndLinks(t *testing.T) {
	base := func() *Image {
		im := New()
		im.AddBytes("/a", []byte("1"), 0o644)
		im.AddSymlink("/l", "a")
		return im
	}
	d0, err := base().Digest()
	require.NoError(t, err)
	same, _ := base().Digest()
	require.Equal(t, d0, same)

	changes := map[string]func(*Image){
		"content": func(im *Image) { im.AddBytes("/a", []byte("2"), 0o644) },
		"mode":    func(im *Image) { im.AddBytes("/a", []byte("1"), 0o755) },
		"link":    func(im *Image) { im.AddSymlink("/l", "b") },
		"path":    func(im *Image) { im.AddBytes("/b", nil, 0o644) },
	}
	for name, change := range changes {
		im := base()
		change(im)
		d, err := im.Digest()
		require.NoError(t, err)
		require.NotEqual(t, d0, d, name)
	}
}

func TestAddHostPathReproducesSymlinkedDirectories(t *testing.T) {
	// On merged-/usr Debian, /lib64/ld-linux-x86-64.so.2 goes through two
	// links; the guest must see the same chain.
	interp := "/lib64/ld-linux-x86-64.so.2"
	if _, err := os.Stat(interp); err != nil {
		t.Fatalf("this test needs a Debian amd64 host: %v", err)
	}
	im := New()
	require.NoError(t, im.AddHostPath(interp))
	resolved, err := filepath.EvalSymlinks(interp)
	require.NoError(t, err)
	require.True(t, im.Has(resolved), "the real file %s must be in the image", resolved)
	for _, link := range []string{"/lib64", "/usr/lib64/ld-linux-x86-64.so.2"} {
		e := im.entries[link]
		require.NotNil(t, e, link)
		require.Equal(t, kindSymlink, e.kind, link)
	}
}

func TestSharedLibrariesOfDigIncludeLoaderAndLibc(t *testing.T) {
	libs, err := sharedLibraries("/usr/bin/dig")
	require.NoError(t, err, "dig comes from bind9-dnsutils (make setup)")
	joined := strings.Join(libs, "\n")
	require.Contains(t, joined, "ld-linux-x86-64.so.2")
	require.Contains(t, joined, "libc.so.6")
	require.Contains(t, joined, "libisc", "dig's own BIND libraries, found transitively")
	seen := map[string]bool{}
	for _, l := range libs {
		require.False(t, seen[l], "listed twice: %s", l)
		seen[l] = true
	}
}

func TestModuleLoadOrderPutsDependenciesFirst(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n" +
		"kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n" +
		"kernel/net/core/failover.ko:\n" +
		"kernel/drivers/char/virtio_console.ko:\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/virtio/virtio.ko\n"), 0o644))
	idx, err := readModuleIndex(dir)
	require.NoError(t, err)
	order, err := idx.loadOrder("virtio_net", "virtio-console", "virtio", "failover")
	require.NoError(t, err)
	require.Equal(t, []string{
		"kernel/net/core/failover.ko",
		"kernel/drivers/net/net_failover.ko",
		"kernel/drivers/net/virtio_net.ko",
		"kernel/drivers/char/virtio_console.ko",
	}, order)
	_, err = idx.loadOrder("nonexistent")
	require.ErrorContains(t, err, "nonexistent")
}
