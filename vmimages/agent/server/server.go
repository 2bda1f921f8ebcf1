// Package server is the request side of the Layer 4.5 guest agent: it reads
// proto frames from a stream and answers them by running programs (on
// pipes, or on a terminal for an interactive shell), moving files, loading
// modules and reading the kernel log. The agent's main
// package runs it on the virtio-serial port; tests run it over net.Pipe.
//
// Nothing a request does may crash the process (it is PID 1 in a guest):
// every handler and goroutine recovers and logs panics, and every frame the
// server cannot read gets an error reply.
package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/kmsg"
	"layer45/vmimages/agent/proto"
)

// Config configures a Server. Zero values take the defaults.
type Config struct {
	// Kernel does module loading, the kernel log, sync and reboot; nil
	// means LinuxKernel{}.
	Kernel Kernel
	// Hello returns what the server says first and answers to "hello".
	Hello func() proto.Hello
	// Setup applies a setup request (see proto.SetupArgs). Nil answers
	// setup with unknown-verb.
	Setup func(proto.SetupArgs) error
	// Logf writes a line to the console (without a trailing newline).
	Logf func(format string, args ...any)
	// Limits; defaults are proto.MaxFrame, proto.MaxOutput, proto.MaxFile
	// and 100000 kernel log records per klog.
	MaxFrame      int
	MaxOutput     int
	MaxFile       int
	MaxLogRecords int
	// Env is the environment programs start with; nil means DefaultEnv.
	Env []string
	// OutputGrace bounds how long the output of a program is still read
	// after it exited (others in its group may keep the pipes open);
	// default 1s.
	OutputGrace time.Duration
	// RebootDelay is how long the server waits after replying to reboot or
	// poweroff before doing it, so the reply leaves the guest; default
	// 200ms.
	RebootDelay time.Duration
}

// Server answers requests. One Server may serve several streams one after
// another (a reconnecting host); background programs outlive a stream.
type Server struct {
	kernel        Kernel
	hello         func() proto.Hello
	setup         func(proto.SetupArgs) error
	logf          func(format string, args ...any)
	maxFrame      int
	maxOutput     int
	maxFile       int
	maxLogRecords int
	env           []string
	outputGrace   time.Duration
	rebootDelay   time.Duration
	reaper        *reaper

	mu         sync.Mutex
	procs      map[int]*proc
	nextHandle int
}

// New returns a Server. It starts the process-wide reaper (see StartReaper).
func New(cfg Config) *Server {
	s := &Server{
		kernel:        cfg.Kernel,
		hello:         cfg.Hello,
		setup:         cfg.Setup,
		logf:          cfg.Logf,
		maxFrame:      cfg.MaxFrame,
		maxOutput:     cfg.MaxOutput,
		maxFile:       cfg.MaxFile,
		maxLogRecords: cfg.MaxLogRecords,
		env:           cfg.Env,
		outputGrace:   cfg.OutputGrace,
		rebootDelay:   cfg.RebootDelay,
		procs:         make(map[int]*proc),
	}
	if s.kernel == nil {
		s.kernel = LinuxKernel{}
	}
	if s.hello == nil {
		s.hello = func() proto.Hello { return proto.Hello{Protocol: proto.Version} }
	}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	if s.maxFrame <= 0 {
		s.maxFrame = proto.MaxFrame
	}
	if s.maxOutput <= 0 {
		s.maxOutput = proto.MaxOutput
	}
	if s.maxFile <= 0 {
		s.maxFile = proto.MaxFile
	}
	if s.maxLogRecords <= 0 {
		s.maxLogRecords = 100000
	}
	if s.env == nil {
		s.env = DefaultEnv
	}
	if s.outputGrace <= 0 {
		s.outputGrace = time.Second
	}
	if s.rebootDelay <= 0 {
		s.rebootDelay = 200 * time.Millisecond
	}
	s.reaper = sharedReaper(s.logf)
	return s
}

// Serve sends the hello frame on rw, then reads requests and answers them
// until reading or writing fails. It returns nil at io.EOF.
func (s *Server) Serve(rw io.ReadWriter) error {
	if err := s.write(rw, s.helloResponse(0)); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	fr := proto.NewFrameReader(rw, s.maxFrame)
	for {
		line, err := fr.Next()
		if errors.Is(err, proto.ErrFrameTooLarge) {
			s.logf("rejected a frame larger than %d bytes", s.maxFrame)
			resp := proto.Response{Error: &proto.Error{
				Code:    proto.CodeFrameTooLarge,
				Message: fmt.Sprintf("frame larger than %d bytes", s.maxFrame),
			}}
			if err := s.write(rw, resp); err != nil {
				return err
			}
			continue
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		resp, after := s.handleFrame(line)
		if err := s.write(rw, resp); err != nil {
			return fmt.Errorf("send %s reply: %w", resp.Verb, err)
		}
		if after != nil {
			s.safely("after "+resp.Verb, after)
		}
	}
}

func (s *Server) write(w io.Writer, resp proto.Response) error {
	b, err := json.Marshal(resp)
	if err != nil {
		// Cannot happen with the types in proto; answer something anyway.
		b, _ = json.Marshal(proto.Response{ID: resp.ID, Verb: resp.Verb, Error: &proto.Error{
			Code: proto.CodeInternal, Message: "encode reply: " + err.Error()}})
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

func (s *Server) helloResponse(id uint64) proto.Response {
	h := s.hello()
	if h.Protocol == 0 {
		h.Protocol = proto.Version
	}
	b, _ := json.Marshal(h)
	return proto.Response{ID: id, Verb: proto.VerbHello, Result: b}
}

// handleFrame decodes and answers one request. after, if not nil, runs
// once the reply is sent (reboot, poweroff).
func (s *Server) handleFrame(line []byte) (resp proto.Response, after func()) {
	var req proto.Request
	if err := json.Unmarshal(line, &req); err != nil {
		// Keep the id if the frame has a readable one.
		var idOnly struct {
			ID uint64 `json:"id"`
		}
		json.Unmarshal(line, &idOnly)
		s.logf("rejected a malformed frame: %v", err)
		return proto.Response{ID: idOnly.ID, Error: &proto.Error{
			Code: proto.CodeBadFrame, Message: "malformed frame: " + err.Error()}}, nil
	}
	resp.ID = req.ID
	resp.Verb = req.Verb
	defer func() {
		if r := recover(); r != nil {
			s.logf("panic in %s: %v\n%s", req.Verb, r, debug.Stack())
			resp.Result = nil
			resp.Error = &proto.Error{Code: proto.CodeInternal, Message: fmt.Sprintf("agent panic in %s: %v", req.Verb, r)}
			after = nil
		}
	}()
	result, after, err := s.dispatch(req)
	if err != nil {
		resp.Error = toProtoError(err)
		return resp, nil
	}
	if result != nil {
		b, err := json.Marshal(result)
		if err != nil {
			resp.Error = &proto.Error{Code: proto.CodeInternal, Message: "encode result: " + err.Error()}
			return resp, nil
		}
		resp.Result = b
	}
	return resp, after
}

// badArgs is an error reply for invalid arguments.
func badArgs(format string, args ...any) error {
	return &proto.Error{Code: proto.CodeBadArgs, Message: fmt.Sprintf(format, args...)}
}

// decode unmarshals a request's arguments.
func decode(req proto.Request, v any) error {
	if len(req.Args) == 0 {
		return badArgs("%s: missing args", req.Verb)
	}
	if err := json.Unmarshal(req.Args, v); err != nil {
		return badArgs("%s: bad args: %v", req.Verb, err)
	}
	return nil
}

// toProtoError turns a Go error into an error reply, keeping errno.
func toProtoError(err error) *proto.Error {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return pe
	}
	e := &proto.Error{Code: proto.CodeErrno, Message: err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		e.Errno = int(errno)
		e.ErrnoName = unix.ErrnoName(errno)
	} else {
		e.Code = proto.CodeInternal
	}
	return e
}

func (s *Server) dispatch(req proto.Request) (result any, after func(), err error) {
	switch req.Verb {
	case proto.VerbHello:
		return s.helloResponse(req.ID).Result, nil, nil
	case proto.VerbPing:
		return nil, nil, nil
	case proto.VerbRun:
		return handle(req, s.run)
	case proto.VerbStart:
		return handle(req, s.start)
	case proto.VerbWait:
		return handle(req, s.wait)
	case proto.VerbSignal:
		return handle(req, s.signal)
	case proto.VerbPut:
		return handle(req, func(a proto.PutArgs) (any, error) { return nil, s.put(a) })
	case proto.VerbGet:
		return handle(req, s.get)
	case proto.VerbInsmod:
		return handle(req, s.insmod)
	case proto.VerbRmmod:
		return handle(req, s.rmmod)
	case proto.VerbKlog:
		if len(req.Args) == 0 { // every argument is optional
			req.Args = []byte("{}")
		}
		return handle(req, s.klog)
	case proto.VerbPtyStart:
		return handle(req, s.ptyStart)
	case proto.VerbPtyWrite:
		return handle(req, s.ptyWrite)
	case proto.VerbPtyRead:
		return handle(req, s.ptyRead)
	case proto.VerbPtyResize:
		return handle(req, func(a proto.PtyResizeArgs) (any, error) { return nil, s.ptyResize(a) })
	case proto.VerbSync:
		s.kernel.Sync()
		return nil, nil, nil
	case proto.VerbPowerOff:
		// Guests run under QEMU's -no-reboot: powering off is the only
		// way out, and the host boots a new QEMU when it wants a reboot.
		s.kernel.Sync()
		return nil, func() {
			s.logf("powering off as asked by the host")
			time.Sleep(s.rebootDelay)
			s.kernel.Sync()
			if err := s.kernel.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
				s.logf("powering off failed: %v", err)
			}
		}, nil
	case proto.VerbSetup:
		if s.setup != nil {
			return handle(req, s.doSetup)
		}
		fallthrough
	default:
		return nil, nil, &proto.Error{Code: proto.CodeUnknownVerb, Message: fmt.Sprintf("unknown verb %q", req.Verb)}
	}
}

// handle decodes req's arguments for a verb's handler and runs it.
func handle[A, R any](req proto.Request, f func(A) (R, error)) (any, func(), error) {
	var a A
	if err := decode(req, &a); err != nil {
		return nil, nil, err
	}
	r, err := f(a)
	if err != nil {
		return nil, nil, err
	}
	return r, nil, nil
}

func (s *Server) run(a proto.RunArgs) (*proto.RunResult, error) {
	p, err := s.spawn(a)
	if err != nil {
		return nil, execError(err)
	}
	r, _ := waitProc(p, 0)
	return r, nil
}

// doSetup runs the setup hook and answers with the hello that follows it.
func (s *Server) doSetup(a proto.SetupArgs) (proto.Hello, error) {
	if err := s.setup(a); err != nil {
		return proto.Hello{}, &proto.Error{Code: proto.CodeBadArgs, Message: "setup: " + err.Error()}
	}
	return s.hello(), nil
}

func (s *Server) start(a proto.RunArgs) (proto.StartResult, error) {
	p, err := s.spawn(a)
	if err != nil {
		return proto.StartResult{}, execError(err)
	}
	return proto.StartResult{Handle: s.register(p), Pid: p.pid}, nil
}

// register puts a started program in the process table and returns its
// handle.
func (s *Server) register(p *proc) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextHandle++
	s.procs[s.nextHandle] = p
	return s.nextHandle
}

// finish waits (bounded) for a started process and forgets it once it
// has ended.
func (s *Server) finish(handle int, p *proc, timeout time.Duration) (*proto.RunResult, error) {
	r, err := waitProc(p, timeout)
	if err != nil {
		return nil, err
	}
	s.forget(handle)
	return r, nil
}

func (s *Server) wait(a proto.WaitArgs) (*proto.RunResult, error) {
	p, err := s.proc(a.Handle)
	if err != nil {
		return nil, err
	}
	return s.finish(a.Handle, p, a.Timeout)
}

func (s *Server) signal(a proto.SignalArgs) (*proto.RunResult, error) {
	p, err := s.proc(a.Handle)
	if err != nil {
		return nil, err
	}
	sig, err := parseSignal(a.Signal)
	if err != nil {
		return nil, badArgs("signal: %v", err)
	}
	select {
	case <-p.done:
	default:
		if err := unix.Kill(-p.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("kill process group %d with %s: %w", p.pid, unix.SignalName(sig), err)
		}
	}
	return s.finish(a.Handle, p, a.Timeout)
}

func (s *Server) insmod(a proto.InsmodArgs) (*proto.ModuleResult, error) {
	if a.Path == "" {
		return nil, badArgs("insmod: no path")
	}
	return s.moduleOp("insmod", a.Path, func() error { return s.kernel.LoadModule(a.Path, a.Params) })
}

func (s *Server) rmmod(a proto.RmmodArgs) (*proto.ModuleResult, error) {
	if a.Name == "" {
		return nil, badArgs("rmmod: no module name")
	}
	return s.moduleOp("rmmod", a.Name, func() error { return s.kernel.UnloadModule(a.Name, a.Flags) })
}

// execError marks a failure to start a program.
func execError(err error) error {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return err
	}
	e := toProtoError(err)
	e.Code = proto.CodeExec
	return e
}

func (s *Server) proc(handle int) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[handle]
	if p == nil {
		return nil, &proto.Error{Code: proto.CodeNoProcess, Message: fmt.Sprintf("no process with handle %d", handle)}
	}
	return p, nil
}

func (s *Server) forget(handle int) {
	s.mu.Lock()
	p := s.procs[handle]
	delete(s.procs, handle)
	s.mu.Unlock()
	if p != nil && p.term != nil {
		p.term.Close()
	}
}

func (s *Server) put(a proto.PutArgs) error {
	if a.Path == "" {
		return badArgs("put: no path")
	}
	if len(a.Data) > s.maxFile {
		return badArgs("put %s: %d bytes is more than the limit of %d", a.Path, len(a.Data), s.maxFile)
	}
	mode := proto.FileMode(a.Mode)
	if a.Mode == 0 {
		mode = 0o644
	}
	if a.Mkdir {
		if err := os.MkdirAll(filepath.Dir(a.Path), 0o755); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(a.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	// One write, so sysfs and procfs files get the whole value at once.
	if _, err := f.Write(a.Data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", a.Path, err)
	}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Mode() != mode {
		if err := f.Chmod(mode); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// get reads a file to its end: stat sizes of procfs, sysfs and tracefs
// files are 0, so it never trusts them.
func (s *Server) get(a proto.GetArgs) (*proto.GetResult, error) {
	if a.Path == "" {
		return nil, badArgs("get: no path")
	}
	f, err := os.Open(a.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(s.maxFile)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", a.Path, err)
	}
	r := &proto.GetResult{Data: data}
	if len(data) > s.maxFile {
		r.Data = data[:s.maxFile]
		r.Truncated = true
	}
	return r, nil
}

// moduleOp runs a module load or unload and collects what the kernel logged
// meanwhile.
func (s *Server) moduleOp(op, target string, call func() error) (*proto.ModuleResult, error) {
	log, logErr := s.kernel.OpenLog(true)
	start := time.Now()
	err := call()
	took := time.Since(start)
	var lines []string
	if logErr == nil {
		lines, _ = kmsg.Lines(log)
		log.Close()
	} else {
		lines = []string{fmt.Sprintf("(agent: kernel log not available: %v)", logErr)}
	}
	if err != nil {
		e := toProtoError(err)
		if e.Code == proto.CodeInternal {
			e.Code = proto.CodeErrno
		}
		e.Message = fmt.Sprintf("%s %s: %v", op, target, err)
		e.Log = lines
		s.logf("%s %s: %v (%s) after %v", op, target, err, e.ErrnoName, took.Round(time.Millisecond))
		return nil, e
	}
	s.logf("%s %s: ok after %v", op, target, took.Round(time.Millisecond))
	return &proto.ModuleResult{Module: target, Log: lines, Duration: took}, nil
}

func (s *Server) klog(a proto.KlogArgs) (*proto.KlogResult, error) {
	src, err := s.kernel.OpenLog(false)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	max := s.maxLogRecords
	if a.Max > 0 && a.Max < max {
		max = a.Max
	}
	recs, next, more, err := kmsg.Collect(src, a.Since, max)
	if err != nil {
		return nil, err
	}
	return &proto.KlogResult{Records: recs, Next: next, More: more}, nil
}

// safely runs fn, logging a panic instead of dying.
func (s *Server) safely(what string, fn func()) {
	defer recoverTo(s.logf, what)
	fn()
}

// goSafe runs fn in a goroutine that logs a panic instead of dying.
func (s *Server) goSafe(what string, fn func()) {
	go s.safely(what, fn)
}

func recoverTo(logf func(string, ...any), what string) {
	if r := recover(); r != nil && logf != nil {
		logf("panic in %s (recovered): %v\n%s", what, r, strings.TrimSpace(string(debug.Stack())))
	}
}
