package server

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/proto"
)

// DefaultEnv is the environment every program starts with; RunArgs.Env is
// added to it.
var DefaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/",
	"TERM=linux",
}

// proc is a program the agent started.
type proc struct {
	pid      int
	argv     []string
	started  time.Time
	done     chan struct{} // closed when result is final
	result   proto.RunResult
	timedOut atomic.Bool
	// term is the master of the program's pseudo-terminal, nil for a
	// program on pipes; it is closed when the handle is forgotten.
	term *os.File
}

// capBuffer keeps the first max bytes written to it and counts the rest.
type capBuffer struct {
	mu        sync.Mutex
	buf       []byte
	max       int
	truncated bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - len(c.buf)
	if room < len(p) {
		c.truncated = true
		if room > 0 {
			c.buf = append(c.buf, p[:room]...)
		}
		return len(p), nil // keep draining the pipe
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *capBuffer) bytes() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf, c.truncated
}

// mergeEnv returns base with extra applied: an entry replaces the earlier
// one with the same key, in place.
func mergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	index := map[string]int{}
	for _, kv := range append(append([]string(nil), base...), extra...) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
			continue
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// lookPath finds file in the PATH of env, like a shell would.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &os.PathError{Op: "exec", Path: file, Err: fmt.Errorf("executable file not found in PATH=%s: %w", path, unix.ENOENT)}
}

// spawn starts args in a new process group, feeding Stdin and capturing
// output up to s.maxOutput per stream. The returned proc's done channel is
// closed when the leader has exited and its output is collected (or the
// output grace period has passed).
func (s *Server) spawn(args proto.RunArgs) (*proc, error) {
	path, env, dir, err := s.resolve(args.Argv, args.Env, args.Dir)
	if err != nil {
		return nil, err
	}

	var files []*os.File // the parent's ends to close on failure
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}

	attr := &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []*os.File{inR, outW, errW},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	p := &proc{argv: args.Argv, done: make(chan struct{})}
	pid, exited, err := s.reaper.start(func() (*os.Process, error) {
		p.started = time.Now()
		return os.StartProcess(path, args.Argv, attr)
	})
	// The child has its own copies now.
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, err
	}
	p.pid = pid

	stdin := args.Stdin
	s.goSafe("stdin", func() {
		defer inW.Close()
		inW.Write(stdin) // EPIPE when the program does not read: fine
	})
	stdout := &capBuffer{max: s.maxOutput}
	stderr := &capBuffer{max: s.maxOutput}
	var copies sync.WaitGroup
	copies.Add(2)
	for _, c := range []struct {
		r *os.File
		w io.Writer
	}{{outR, stdout}, {errR, stderr}} {
		s.goSafe("output", func() {
			defer copies.Done()
			io.Copy(c.w, c.r)
		})
	}

	var timer *time.Timer
	if args.Timeout > 0 {
		timer = time.AfterFunc(args.Timeout, func() {
			p.timedOut.Store(true)
			unix.Kill(-pid, unix.SIGKILL)
		})
	}

	s.goSafe("monitor", func() {
		ws := <-exited
		ended := time.Now()
		if timer != nil {
			timer.Stop()
		}
		// Programs left behind in the group (or daemons) may hold the
		// pipes open; do not wait for them for long.
		drained := make(chan struct{})
		go func() { copies.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(s.outputGrace):
			outR.Close()
			errR.Close()
			<-drained
		}
		outR.Close()
		errR.Close()
		r := exitResult(pid, ws, ended.Sub(p.started))
		r.TimedOut = p.timedOut.Load()
		var t1, t2 bool
		r.Stdout, t1 = stdout.bytes()
		r.Stderr, t2 = stderr.bytes()
		r.Truncated = t1 || t2
		p.result = r
		close(p.done)
	})
	return p, nil
}

// resolve finds the program of argv in the PATH of the environment it
// will have (the default one with extra applied) and defaults its working
// directory to /.
func (s *Server) resolve(argv, extra []string, dir string) (path string, env []string, _ string, err error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", nil, "", badArgs("empty argv")
	}
	env = mergeEnv(s.env, extra)
	if path, err = lookPath(argv[0], env); err != nil {
		return "", nil, "", err
	}
	if dir == "" {
		dir = "/"
	}
	return path, env, dir, nil
}

// exitResult is how a program ended, from its wait status.
func exitResult(pid int, ws unix.WaitStatus, ran time.Duration) proto.RunResult {
	r := proto.RunResult{Pid: pid, Duration: ran}
	if ws.Signaled() {
		r.ExitCode = -1
		r.Signal = unix.SignalName(ws.Signal())
		if r.Signal == "" {
			r.Signal = fmt.Sprintf("signal %d", int(ws.Signal()))
		}
		return r
	}
	r.ExitCode = ws.ExitStatus()
	return r
}

// waitProc waits up to timeout (0: without limit) for p to finish.
func waitProc(p *proc, timeout time.Duration) (*proto.RunResult, error) {
	if timeout <= 0 {
		<-p.done
		return &p.result, nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return &p.result, nil
	case <-t.C:
		return nil, &proto.Error{
			Code:    proto.CodeStillRunning,
			Message: fmt.Sprintf("process %d %q still running after %v", p.pid, p.argv, timeout),
		}
	}
}

// parseSignal accepts "SIGTERM", "TERM" or a number.
func parseSignal(name string) (unix.Signal, error) {
	if name == "" {
		return 0, errors.New("no signal given")
	}
	if v, err := strconv.Atoi(name); err == nil {
		if v < 0 || v > 64 {
			return 0, fmt.Errorf("bad signal number %d", v)
		}
		return unix.Signal(v), nil
	}
	up := strings.ToUpper(name)
	if !strings.HasPrefix(up, "SIG") {
		up = "SIG" + up
	}
	if sig := unix.SignalNum(up); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", name)
}
