package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// NewDisk makes an empty ext4 disk image of sizeMiB for t in a private
// directory removed when t ends, and returns its path. Boot a guest with
// WithDisk(path, false) (and WithMount to mount it at boot); rebooting the
// guest keeps what it wrote. The image is a sparse file formatted on the
// host with mkfs.ext4 (e2fsprogs, installed by `make setup`). Mounting it
// needs ext4's crc32c driver, which guest images carry
// (vmimages.GuestOptionalModules).
func NewDisk(t testing.TB, sizeMiB int) string {
	t.Helper()
	if sizeMiB < 1 {
		t.Fatalf("vm.NewDisk: size %d MiB", sizeMiB)
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		// Also look where root's tools live when PATH lacks sbin.
		for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
			if _, e := os.Stat(p); e == nil {
				mkfs, err = p, nil
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("vm.NewDisk: mkfs.ext4 not found (e2fsprogs is a setup dependency: run make setup): %v", err)
	}
	dir, err := makePrivateDir("disk")
	if err != nil {
		t.Fatalf("vm.NewDisk: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("vm.NewDisk: %v", err)
	}
	err = f.Truncate(int64(sizeMiB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("vm.NewDisk: %v", err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", path).CombinedOutput(); err != nil {
		t.Fatalf("vm.NewDisk: mkfs.ext4 %s: %v\n%s", path, err, out)
	}
	return path
}
