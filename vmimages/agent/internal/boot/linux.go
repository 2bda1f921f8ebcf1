package boot

import (
	"context"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/server"
)

// Linux is the real Sys.
type Linux struct{}

func (Linux) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}
func (Linux) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (Linux) Symlink(oldname, newname string) error        { return os.Symlink(oldname, newname) }
func (Linux) ReadFile(path string) ([]byte, error)         { return os.ReadFile(path) }

func (Linux) ReadDir(path string) ([]string, error) {
	entries, err := os.ReadDir(path)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}

func (Linux) Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (Linux) LoadModule(path string) error { return server.FinitModule(path, "") }

func (Linux) Sethostname(name string) error { return unix.Sethostname([]byte(name)) }

func (Linux) Release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// Run runs argv with a 30s limit. It must only be used before the agent's
// reaper starts (the reaper takes every child's exit status).
func (Linux) Run(argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = server.DefaultEnv
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

func (Linux) Sleep(d time.Duration) { time.Sleep(d) }
