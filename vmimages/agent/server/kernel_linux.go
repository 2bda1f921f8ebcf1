package server

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/kmsg"
)

// Kernel is what the server asks of the kernel beyond running programs and
// files: module loading, the kernel log, sync and reboot. LinuxKernel is
// the real one; tests use a fake.
type Kernel interface {
	// LoadModule loads the module file at path with params
	// (finit_module(2)).
	LoadModule(path, params string) error
	// UnloadModule removes a module (delete_module(2)).
	UnloadModule(name string, flags int) error
	// OpenLog opens the kernel log; with fromEnd only records logged after
	// the call are read.
	OpenLog(fromEnd bool) (kmsg.Source, error)
	Sync()
	// Reboot calls reboot(2) with cmd (unix.LINUX_REBOOT_CMD_*). It does
	// not return on success.
	Reboot(cmd int) error
}

// LinuxKernel is the Kernel of the machine the agent runs on.
type LinuxKernel struct {
	// KmsgPath is the kernel log device; empty means /dev/kmsg.
	KmsgPath string
}

// LoadModule opens path and calls finit_module on it. Compressed modules
// (.ko.xz, .ko.zst, .ko.gz) are passed with MODULE_INIT_COMPRESSED_FILE,
// which needs a kernel built with CONFIG_MODULE_DECOMPRESS.
func (LinuxKernel) LoadModule(path, params string) error {
	return FinitModule(path, params)
}

// FinitModule loads the module file at path with params.
func FinitModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(path, ".ko"+ext) {
			flags |= unix.MODULE_INIT_COMPRESSED_FILE
		}
	}
	return unix.FinitModule(int(f.Fd()), params, flags)
}

func (LinuxKernel) UnloadModule(name string, flags int) error {
	return unix.DeleteModule(name, flags)
}

func (k LinuxKernel) OpenLog(fromEnd bool) (kmsg.Source, error) {
	p := k.KmsgPath
	if p == "" {
		p = "/dev/kmsg"
	}
	return kmsg.Open(p, fromEnd)
}

func (LinuxKernel) Sync() { unix.Sync() }

func (LinuxKernel) Reboot(cmd int) error { return unix.Reboot(cmd) }
