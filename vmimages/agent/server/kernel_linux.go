package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

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

// FinitChildArg is the first argument with which the agent runs itself to
// load one module (see LoadModule and FinitChild).
const FinitChildArg = "--finit-module"

// LoadModule loads the module in a child process (the agent itself, run
// with FinitChildArg): a module whose init oopses kills the task that
// loads it, and that must not be a thread of PID 1.
func (LinuxKernel) LoadModule(path, params string) error {
	pid, exited, err := sharedReaper(nil).start(func() (*os.Process, error) {
		return os.StartProcess("/proc/self/exe", []string{"l45-insmod", FinitChildArg, path, params},
			&os.ProcAttr{Files: []*os.File{nil, os.Stderr, os.Stderr}})
	})
	if err != nil {
		return fmt.Errorf("start module loader: %w", err)
	}
	crashed := fmt.Errorf("the process loading %s died in the kernel: the module crashed in its init (see the console)", path)
	// A process on its way out also shows a dead leader with threads
	// still listed for a moment (slow on a debug kernel under TCG); only
	// a state that lasts is a crash.
	deadFor := 0
	for {
		select {
		case ws := <-exited:
			switch {
			case ws.Signaled():
				return crashed
			case ws.ExitStatus() != 0:
				return unix.Errno(ws.ExitStatus())
			}
			return nil
		case <-time.After(200 * time.Millisecond):
			// An oops kills only the thread that made the call (the
			// child's main thread, see FinitChild); the Go runtime's
			// other threads would keep the child alive for ever.
			if !leaderDead(pid) {
				deadFor = 0
				continue
			}
			if deadFor++; deadFor >= 25 {
				unix.Kill(pid, unix.SIGKILL)
				<-exited
				return crashed
			}
		}
	}
}

// leaderDead reports whether pid's main thread has exited while other
// threads of the process live on: its state is Z or X in /proc/PID/stat
// and /proc/PID/task still lists other threads. A process that simply
// exited is a zombie too until the reaper collects it, but with its
// threads gone.
func leaderDead(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X') {
		return false
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err == nil && len(tasks) > 1
}

// FinitChild is the child's side of LoadModule: it loads one module and
// exits with the errno (0 on success). The caller must run it on the main
// thread (runtime.LockOSThread in an init function), so that a crash in the
// module's init leaves the process's leader dead for LoadModule to see.
func FinitChild(path, params string) int {
	var errno unix.Errno
	if err := FinitModule(path, params); err != nil {
		if !errors.As(err, &errno) {
			return int(unix.EIO)
		}
		return int(errno)
	}
	return 0
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
