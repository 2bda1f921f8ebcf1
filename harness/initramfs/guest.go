package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"layer45/harness/cache"
	"layer45/harness/kernels"
	"layer45/harness/repo"
	"layer45/vmimages/guest"
)

// GuestPrograms are the host programs every guest carries, with their
// libraries. They come from Debian packages the set-up installs.
var GuestPrograms = []string{"/usr/bin/dig", "/usr/sbin/dnsmasq"}

// GuestModules are the kernel modules every guest loads at boot, before the
// agent looks for its port: virtio transport, console (the agent's port)
// and network. Built-in ones are skipped.
var GuestModules = []string{"virtio_pci", "virtio_console", "virtio_net"}

// DiskModules are loaded at boot only by a guest with a disk: block and
// ext4 cost a cold boot most of a second under TCG, and would make every
// snapshot larger, for the few tests with a persistent disk.
var DiskModules = []string{"virtio_blk", "ext4"}

// GuestOptionalModules are loaded with the disk modules where the kernel
// has them as modules: ext4 asks the crypto API for "crc32c" at mount time
// (6.1 refuses the mount with "Cannot load crc32c driver." without it), and
// the guest has no modprobe to load it on demand. Later kernels build it in
// or rename it.
var GuestOptionalModules = []string{"crc32c_generic"}

const busyboxPath = "/bin/busybox"

// Compose describes the standard guest image for kernel k with the
// harness's own guest programs.
func Compose(k *kernels.Kernel, tools Tools) (*Image, error) {
	im := New()
	im.AddFile("/init", tools.Agent, 0o755)
	im.AddFile(guest.L45ctl, tools.L45ctl, 0o755)
	im.AddFile(guest.L45net, tools.L45net, 0o755)
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/var/run", "/mnt"} {
		im.AddDir(d, 0o755)
	}
	for _, p := range GuestPrograms {
		if err := im.AddProgram(p); err != nil {
			return nil, fmt.Errorf("%w (the set-up installs it: make setup)", err)
		}
	}
	if err := addBusybox(im); err != nil {
		return nil, err
	}
	im.AddBytes("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	im.AddBytes("/etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
	im.AddBytes("/etc/hosts", []byte("127.0.0.1 localhost\n"), 0o644)
	// dig reads resolv.conf even when given @server.
	im.AddBytes("/etc/resolv.conf", []byte("nameserver 127.0.0.1\n"), 0o644)

	boot, disk, err := guestModuleSets(k)
	if err != nil {
		return nil, err
	}
	decompresses := kernelDecompresses(k)
	for list, files := range map[string][]string{guest.ModulesLoad: boot, guest.DiskModulesLoad: disk} {
		var load strings.Builder
		for _, f := range files {
			p, err := addModule(im, k, f, decompresses)
			if err != nil {
				return nil, err
			}
			load.WriteString(p + "\n")
		}
		im.AddBytes(list, []byte(load.String()), 0o644)
	}
	return im, nil
}

// addModule puts the module file f (relative to k's modules folder) into
// the image and returns its path in the guest. The agent loads a
// compressed module with MODULE_INIT_COMPRESSED_FILE where the kernel
// unpacks that format itself; others are decompressed here.
func addModule(im *Image, k *kernels.Kernel, f string, decompresses map[string]bool) (string, error) {
	host := filepath.Join(k.ModulesDir, f)
	format := compression(f)
	if format == "" || decompresses[format] {
		p := path.Join(guest.ModulesRoot, k.Release, f)
		im.AddFile(p, host, 0o644)
		return p, nil
	}
	data, err := decompress(host, format)
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	p := path.Join(guest.ModulesRoot, k.Release, strings.TrimSuffix(f, "."+format))
	im.AddBytes(p, data, 0o644)
	return p, nil
}

// GuestModuleFiles are the files of k's modules folder (relative to it)
// that guests load at boot, each after those it depends on: the guest
// image carries these and no other of the kernel's modules.
func GuestModuleFiles(k *kernels.Kernel) ([]string, error) {
	boot, disk, err := guestModuleSets(k)
	return append(boot, disk...), err
}

// guestModuleSets are the module files every guest loads and those only a
// guest with a disk loads, each list in load order and without the files
// of the first.
func guestModuleSets(k *kernels.Kernel) (boot, disk []string, err error) {
	idx, err := readModuleIndex(k.ModulesDir)
	if err != nil {
		return nil, nil, err
	}
	boot, err = idx.loadOrder(GuestModules...)
	if err != nil {
		return nil, nil, err
	}
	var want []string
	for _, n := range GuestOptionalModules {
		if _, ok := idx.file[n]; ok {
			want = append(want, n)
		}
	}
	all, err := idx.loadOrder(append(want, DiskModules...)...)
	if err != nil {
		return nil, nil, err
	}
	loaded := map[string]bool{}
	for _, f := range boot {
		loaded[f] = true
	}
	for _, f := range all {
		if !loaded[f] {
			disk = append(disk, f)
		}
	}
	return boot, disk, nil
}

// compression is the compression suffix of a module file (xz, zst, gz), or
// "" for a plain .ko.
func compression(file string) string {
	for _, f := range []string{"xz", "zst", "gz"} {
		if strings.HasSuffix(file, ".ko."+f) {
			return f
		}
	}
	return ""
}

// kernelDecompresses says which compressed module formats the kernel
// unpacks itself in finit_module (CONFIG_MODULE_DECOMPRESS, for the one
// format CONFIG_MODULE_COMPRESS_* selects), read from its build
// directory's configuration. Others are decompressed on the host.
func kernelDecompresses(k *kernels.Kernel) map[string]bool {
	out := map[string]bool{}
	conf, err := k.Config()
	if err != nil || conf["CONFIG_MODULE_DECOMPRESS"] != "y" {
		return out
	}
	for format, option := range map[string]string{"xz": "CONFIG_MODULE_COMPRESS_XZ", "zst": "CONFIG_MODULE_COMPRESS_ZSTD", "gz": "CONFIG_MODULE_COMPRESS_GZIP"} {
		out[format] = conf[option] == "y"
	}
	return out
}

// decompress unpacks a compressed module with the command-line tool of its
// format (xz-utils, zstd, gzip: the set-up installs them).
func decompress(file, format string) ([]byte, error) {
	tool := map[string]string{"xz": "xz", "zst": "zstd", "gz": "gzip"}[format]
	var stderr bytes.Buffer
	cmd := exec.Command(tool, "-dc", file)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("decompress module %s with %s: %w %s (install %s: make setup)", file, tool, err, strings.TrimSpace(stderr.String()), tool)
	}
	return out, nil
}

func addBusybox(im *Image) error {
	if _, err := os.Stat(busyboxPath); err != nil {
		return fmt.Errorf("busybox: %w (install busybox-static: make setup)", err)
	}
	out, err := exec.Command(busyboxPath, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	if libs, err := sharedLibraries(busyboxPath); err != nil || len(libs) > 0 {
		return fmt.Errorf("%s is not statically linked: install busybox-static", busyboxPath)
	}
	im.AddFile(busyboxPath, busyboxPath, 0o755)
	for _, applet := range strings.Fields(string(out)) {
		p := "/" + applet
		if im.Has(p) {
			continue
		}
		im.AddSymlink(p, busyboxPath)
	}
	return nil
}

// Tools are the harness's own programs in the guest, built from this
// repository as static binaries.
type Tools struct {
	Agent  string // PID 1
	L45ctl string // Layer 4.5 control requests
	L45net string // socket calls on demand
}

// BuildTools compiles the guest programs into dir.
func BuildTools(ctx context.Context, dir string) (Tools, error) {
	root, err := repo.Root()
	if err != nil {
		return Tools{}, err
	}
	t := Tools{Agent: filepath.Join(dir, "l45-agent"), L45ctl: filepath.Join(dir, "l45ctl"), L45net: filepath.Join(dir, "l45net")}
	for pkg, out := range map[string]string{"./vmimages/agent": t.Agent, "./vmimages/l45ctl": t.L45ctl, "./vmimages/l45net": t.L45net} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return Tools{}, fmt.Errorf("build guest program %s: %w\n%s", pkg, err, stderr.String())
		}
	}
	return t, nil
}

var guestImages sync.Map // kernel release+image -> *imageResult

type imageResult struct {
	once sync.Once
	path string
	err  error
}

// GuestImage returns the path of the cached initramfs for kernel k, building
// the agent and composing the image the first time in this process (and
// only when its content changed across processes).
func GuestImage(ctx context.Context, c *cache.Cache, k *kernels.Kernel) (string, error) {
	v, _ := guestImages.LoadOrStore(k.Image, &imageResult{})
	r := v.(*imageResult)
	r.once.Do(func() { r.path, r.err = guestImage(ctx, c, k) })
	return r.path, r.err
}

func guestImage(ctx context.Context, c *cache.Cache, k *kernels.Kernel) (string, error) {
	tmp, err := os.MkdirTemp("", "l45-agent-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	tools, err := BuildTools(ctx, tmp)
	if err != nil {
		return "", err
	}
	im, err := Compose(k, tools)
	if err != nil {
		return "", err
	}
	digest, err := im.Digest()
	if err != nil {
		return "", err
	}
	dir, err := c.Get(ctx, cache.Key("initramfs-"+k.Release, digest), func(_ context.Context, dir string) error {
		return im.WriteFile(filepath.Join(dir, "initramfs.cpio"))
	})
	if err != nil {
		return "", fmt.Errorf("guest image for %s: %w", k.Release, err)
	}
	return filepath.Join(dir, "initramfs.cpio"), nil
}
