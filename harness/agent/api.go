package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/proto"
)

// Cmd is a program to run in the guest.
type Cmd struct {
	Argv []string
	// Env entries ("KEY=VALUE") are added to the agent's default
	// environment (PATH of the usual bin and sbin folders, HOME=/,
	// TERM=linux); later entries win.
	Env []string
	// Dir is the working directory; empty means /.
	Dir   string
	Stdin []byte
	// Timeout kills the program's whole process group when it expires.
	// Zero means no limit of its own; in both cases the agent is told to
	// kill it a little before ctx's deadline.
	Timeout time.Duration
}

// Result is how a program ended.
type Result struct {
	Argv []string
	Pid  int
	// ExitCode is the exit status, or -1 when a signal ended the program.
	ExitCode int
	// Signal names the signal that ended the program ("SIGKILL"), if any.
	Signal string
	// TimedOut says the agent killed the program at its timeout.
	TimedOut bool
	Stdout   []byte
	Stderr   []byte
	// Truncated says stdout or stderr was longer than the agent keeps
	// (a few MiB each); the beginning is kept.
	Truncated bool
	Duration  time.Duration
}

// Err returns nil if the program exited with status 0, and otherwise an
// *ExitError naming argv, the exit status or signal and the end of stderr.
func (r *Result) Err() error {
	if r.ExitCode == 0 && r.Signal == "" && !r.TimedOut {
		return nil
	}
	return &ExitError{Result: r}
}

// ExitError is a program that did not exit with status 0.
type ExitError struct{ Result *Result }

func (e *ExitError) Error() string {
	r := e.Result
	var b strings.Builder
	fmt.Fprintf(&b, "%q", r.Argv)
	switch {
	case r.TimedOut:
		fmt.Fprintf(&b, ": timed out after %v, killed", r.Duration.Round(time.Millisecond))
		if r.Signal != "" {
			fmt.Fprintf(&b, " by %s", r.Signal)
		}
	case r.Signal != "":
		fmt.Fprintf(&b, ": killed by %s", r.Signal)
	default:
		fmt.Fprintf(&b, ": exit code %d", r.ExitCode)
	}
	if tail := tail(r.Stderr, 512); tail != "" {
		fmt.Fprintf(&b, "; stderr: %s", tail)
	}
	return b.String()
}

// tail returns the last max bytes of b, trimmed, marked when cut.
func tail(b []byte, max int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	return s
}

func (c *Client) newResult(argv []string, r *proto.RunResult) *Result {
	return &Result{
		Argv:      argv,
		Pid:       r.Pid,
		ExitCode:  r.ExitCode,
		Signal:    r.Signal,
		TimedOut:  r.TimedOut,
		Stdout:    r.Stdout,
		Stderr:    r.Stderr,
		Truncated: r.Truncated,
		Duration:  r.Duration,
	}
}

// AgentError is a failure the agent reported.
type AgentError struct {
	Verb    string
	Code    string // proto.Code*
	Message string
	// Errno is the failed system call's error, 0 if none.
	Errno syscall.Errno
	// Log holds kernel log lines the agent attached.
	Log []string
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("agent %s: %s", e.Verb, e.Message)
}

// Unwrap returns Errno, so errors.Is(err, fs.ErrNotExist) and
// errors.Is(err, syscall.ENOENT) work.
func (e *AgentError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// Is matches ErrStillRunning and ErrNoProcess by code.
func (e *AgentError) Is(target error) bool {
	switch target {
	case ErrStillRunning:
		return e.Code == proto.CodeStillRunning
	case ErrNoProcess:
		return e.Code == proto.CodeNoProcess
	}
	return false
}

func (c *Client) agentError(verb string, pe *proto.Error) error {
	return &AgentError{Verb: verb, Code: pe.Code, Message: pe.Message, Errno: syscall.Errno(pe.Errno), Log: pe.Log}
}

// Ping checks that the agent answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, proto.VerbPing, nil, nil)
}

func runArgs(ctx context.Context, cmd Cmd) proto.RunArgs {
	return proto.RunArgs{
		Argv:    cmd.Argv,
		Env:     cmd.Env,
		Dir:     cmd.Dir,
		Stdin:   cmd.Stdin,
		Timeout: budget(ctx, cmd.Timeout),
	}
}

// Run runs a program to its end and returns how it ended. A program that
// cannot be started (not found, not executable) is an error; one that exits
// non-zero is not (see Result.Err).
func (c *Client) Run(ctx context.Context, cmd Cmd) (*Result, error) {
	var r proto.RunResult
	if err := c.call(ctx, proto.VerbRun, runArgs(ctx, cmd), &r); err != nil {
		return nil, err
	}
	return c.newResult(cmd.Argv, &r), nil
}

// Process is a program started in the background.
type Process struct {
	// ID is the agent's handle for the process.
	ID   int
	Pid  int
	Argv []string
	c    *Client
}

// Start starts a program in the background. Its output is kept (capped) and
// returned by Wait or Signal. Cmd.Timeout, if set, kills it after that
// long; ctx only bounds the start.
func (c *Client) Start(ctx context.Context, cmd Cmd) (*Process, error) {
	a := runArgs(context.Background(), cmd)
	var r proto.StartResult
	if err := c.call(ctx, proto.VerbStart, a, &r); err != nil {
		return nil, err
	}
	return &Process{ID: r.Handle, Pid: r.Pid, Argv: cmd.Argv, c: c}, nil
}

// Wait waits up to timeout for the process to end and returns its result.
// timeout <= 0 waits until shortly before ctx's deadline (or without limit
// if ctx has none). If the process is still running then, the error
// matches ErrStillRunning and the process is left alone.
func (p *Process) Wait(ctx context.Context, timeout time.Duration) (*Result, error) {
	var r proto.RunResult
	if err := p.c.call(ctx, proto.VerbWait, proto.WaitArgs{Handle: p.ID, Timeout: budget(ctx, timeout)}, &r); err != nil {
		return nil, err
	}
	return p.c.newResult(p.Argv, &r), nil
}

// Signal sends sig to the process's group and waits for the process to end
// (until shortly before ctx's deadline, or 30s without one). If it is still
// running then, the error matches ErrStillRunning.
func (p *Process) Signal(ctx context.Context, sig syscall.Signal) (*Result, error) {
	return p.signal(ctx, sig, 30*time.Second)
}

func (p *Process) signal(ctx context.Context, sig syscall.Signal, wait time.Duration) (*Result, error) {
	name := unix.SignalName(sig)
	if name == "" {
		name = fmt.Sprint(int(sig))
	}
	var r proto.RunResult
	if err := p.c.call(ctx, proto.VerbSignal, proto.SignalArgs{Handle: p.ID, Signal: name, Timeout: budget(ctx, wait)}, &r); err != nil {
		return nil, err
	}
	return p.c.newResult(p.Argv, &r), nil
}

// Stop ends the process: SIGTERM, and SIGKILL if it has not ended 5s later.
func (p *Process) Stop(ctx context.Context) (*Result, error) {
	r, err := p.signal(ctx, syscall.SIGTERM, 5*time.Second)
	if errors.Is(err, ErrStillRunning) {
		return p.signal(ctx, syscall.SIGKILL, 0)
	}
	return r, err
}

// PutFile writes data to path in the guest with mode's permission bits
// (0 means 0644), creating parent directories.
func (c *Client) PutFile(ctx context.Context, path string, data []byte, mode os.FileMode) error {
	if len(data) > proto.MaxFile {
		return fmt.Errorf("agent put %s: %d bytes is more than the limit of %d", path, len(data), proto.MaxFile)
	}
	return c.call(ctx, proto.VerbPut, proto.PutArgs{Path: path, Mode: proto.ModeBits(mode), Data: data, Mkdir: true}, nil)
}

// ReadFile reads a file in the guest to its end (procfs, sysfs and tracefs
// files included, such as /sys/kernel/tracing/trace). A file larger than
// the agent sends (32 MiB) returns its beginning and an error wrapping
// ErrTruncated.
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	var r proto.GetResult
	if err := c.call(ctx, proto.VerbGet, proto.GetArgs{Path: path}, &r); err != nil {
		return nil, err
	}
	if r.Truncated {
		return r.Data, fmt.Errorf("agent get %s: %w after %d bytes", path, ErrTruncated, len(r.Data))
	}
	return r.Data, nil
}

// ModuleResult is a successful module load or unload.
type ModuleResult struct {
	Module string
	// Log holds the kernel log lines printed during the call.
	Log      []string
	Duration time.Duration
}

// ModuleError is a module load or unload the kernel refused.
type ModuleError struct {
	Op     string // "insmod" or "rmmod"
	Module string // the guest path (insmod) or module name (rmmod)
	Errno  syscall.Errno
	// Log holds the kernel log lines printed during the call.
	Log []string
}

func (e *ModuleError) Error() string {
	msg := fmt.Sprintf("%s %s: %s (%s)", e.Op, e.Module, e.Errno.Error(), unix.ErrnoName(e.Errno))
	if len(e.Log) > 0 {
		msg += "; kernel said: " + strings.Join(e.Log, " | ")
	}
	return msg
}

// Unwrap returns the errno, so errors.Is(err, syscall.EINVAL) works.
func (e *ModuleError) Unwrap() error { return e.Errno }

func moduleErr(op, module string, err error) error {
	var ae *AgentError
	if errors.As(err, &ae) && ae.Code == proto.CodeErrno && ae.Errno != 0 {
		return &ModuleError{Op: op, Module: module, Errno: ae.Errno, Log: ae.Log}
	}
	return err
}

// LoadModule loads the module file at guestPath (a path in the guest) with
// params. A refusal is a *ModuleError.
func (c *Client) LoadModule(ctx context.Context, guestPath, params string) (*ModuleResult, error) {
	var r proto.ModuleResult
	if err := c.call(ctx, proto.VerbInsmod, proto.InsmodArgs{Path: guestPath, Params: params}, &r); err != nil {
		return nil, moduleErr("insmod", guestPath, err)
	}
	return &ModuleResult{Module: r.Module, Log: r.Log, Duration: r.Duration}, nil
}

// UnloadOption modifies UnloadModule.
type UnloadOption func(*proto.RmmodArgs)

// Force unloads even a module in use (O_TRUNC), if the kernel allows it.
func Force() UnloadOption {
	return func(a *proto.RmmodArgs) { a.Flags |= unix.O_TRUNC }
}

// UnloadModule removes the module called name (delete_module(2) with
// O_NONBLOCK, as rmmod does). A refusal is a *ModuleError.
func (c *Client) UnloadModule(ctx context.Context, name string, opts ...UnloadOption) (*ModuleResult, error) {
	a := proto.RmmodArgs{Name: name, Flags: unix.O_NONBLOCK}
	for _, o := range opts {
		o(&a)
	}
	var r proto.ModuleResult
	if err := c.call(ctx, proto.VerbRmmod, a, &r); err != nil {
		return nil, moduleErr("rmmod", name, err)
	}
	return &ModuleResult{Module: r.Module, Log: r.Log, Duration: r.Duration}, nil
}

// KernelLog returns the kernel log records with sequence number >= since
// (0: the whole buffer) and the cursor to pass next time to get only newer
// ones.
func (c *Client) KernelLog(ctx context.Context, since uint64) ([]LogRecord, uint64, error) {
	var all []LogRecord
	for {
		var r proto.KlogResult
		if err := c.call(ctx, proto.VerbKlog, proto.KlogArgs{Since: since}, &r); err != nil {
			return all, since, err
		}
		all = append(all, r.Records...)
		since = r.Next
		if !r.More || len(r.Records) == 0 {
			return all, since, nil
		}
	}
}

// Sync flushes the guest's file systems.
func (c *Client) Sync(ctx context.Context) error {
	return c.call(ctx, proto.VerbSync, nil, nil)
}

// PowerOff syncs and powers the guest off. The agent replies first; later
// calls fail with ErrPoweredOff.
func (c *Client) PowerOff(ctx context.Context) error {
	if err := c.call(ctx, proto.VerbPowerOff, nil, nil); err != nil {
		return err
	}
	c.mu.Lock()
	c.poison(ErrPoweredOff)
	c.mu.Unlock()
	return nil
}

// Setup gives a guest restored from a snapshot its identity (see
// proto.SetupArgs) and returns the agent's hello after it, which becomes
// Hello.
func (c *Client) Setup(ctx context.Context, a proto.SetupArgs) (Hello, error) {
	var h Hello
	if err := c.call(ctx, proto.VerbSetup, a, &h); err != nil {
		return Hello{}, err
	}
	c.setHello(h)
	return h, nil
}
