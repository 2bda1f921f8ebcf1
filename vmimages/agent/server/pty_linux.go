package server

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/proto"
	"layer45/vmimages/agent/pty"
)

// ptyWriteWait bounds a pty-write into a full input buffer: the server
// answers one request at a time and must not stall behind a program that
// does not read.
const ptyWriteWait = 100 * time.Millisecond

func (s *Server) ptyStart(a proto.PtyStartArgs) (proto.StartResult, error) {
	p, err := s.spawnPty(a)
	if err != nil {
		return proto.StartResult{}, execError(err)
	}
	s.logf("started %q on a terminal: pid %d", a.Argv, p.pid)
	return proto.StartResult{Handle: s.register(p), Pid: p.pid}, nil
}

// spawnPty starts a program on a new pseudo-terminal, in a session of its
// own with the terminal as its controlling terminal, so that job control,
// Ctrl-C and SIGWINCH work as on a console. Its process group is its pid,
// as for spawn's programs.
func (s *Server) spawnPty(a proto.PtyStartArgs) (*proc, error) {
	extra := a.Env
	if a.Term != "" {
		extra = append(append([]string(nil), extra...), "TERM="+a.Term)
	}
	path, env, dir, err := s.resolve(a.Argv, extra, a.Dir)
	if err != nil {
		return nil, err
	}
	master, slave, err := pty.Open()
	if err != nil {
		return nil, err
	}
	if a.Rows > 0 && a.Cols > 0 {
		if err := pty.SetSize(master, a.Rows, a.Cols); err != nil {
			master.Close()
			slave.Close()
			return nil, err
		}
	}
	attr := &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []*os.File{slave, slave, slave},
		Sys:   &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0},
	}
	p := &proc{argv: a.Argv, done: make(chan struct{}), term: master}
	pid, exited, err := s.reaper.start(func() (*os.Process, error) {
		p.started = time.Now()
		return os.StartProcess(path, a.Argv, attr)
	})
	// Only the program may hold the slave: the master reads EIO once
	// every holder has closed it.
	slave.Close()
	if err != nil {
		master.Close()
		return nil, err
	}
	p.pid = pid
	s.goSafe("pty monitor", func() {
		ws := <-exited
		p.result = exitResult(pid, ws, time.Since(p.started))
		close(p.done)
	})
	return p, nil
}

// ptyProc is the program on a terminal with handle h.
func (s *Server) ptyProc(h int) (*proc, error) {
	p, err := s.proc(h)
	if err != nil {
		return nil, err
	}
	if p.term == nil {
		return nil, badArgs("process %d (handle %d) is not on a terminal", p.pid, h)
	}
	return p, nil
}

func (s *Server) ptyWrite(a proto.PtyWriteArgs) (*proto.PtyWriteResult, error) {
	p, err := s.ptyProc(a.Handle)
	if err != nil {
		return nil, err
	}
	if isDone(p) {
		// Nobody will read it, and the terminal's echo of it would
		// hold back the exit until the typing stops.
		return &proto.PtyWriteResult{N: len(a.Data)}, nil
	}
	p.term.SetWriteDeadline(time.Now().Add(ptyWriteWait))
	n, err := p.term.Write(a.Data)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, fmt.Errorf("type on the terminal of %d: %w", p.pid, err)
	}
	return &proto.PtyWriteResult{N: n}, nil
}

// ptyRead returns the output the terminal has, waiting up to a.Wait for
// some. The exit is reported only after a read that began once the
// program had ended found nothing more: output written just before the
// end can reach the master after the exit is seen.
func (s *Server) ptyRead(a proto.PtyReadArgs) (*proto.PtyReadResult, error) {
	p, err := s.ptyProc(a.Handle)
	if err != nil {
		return nil, err
	}
	limit := a.Max
	if limit <= 0 || limit > proto.MaxPtyRead {
		limit = proto.MaxPtyRead
	}
	// A deadline already passed would fail the read without trying it.
	deadline := time.Now().Add(max(a.Wait, time.Millisecond))
	ended := isDone(p)
	buf := make([]byte, limit)
	p.term.SetReadDeadline(deadline)
	n, err := p.term.Read(buf)
	if n > 0 {
		return &proto.PtyReadResult{Data: buf[:n]}, nil
	}
	switch {
	case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
	case errors.Is(err, unix.EIO), err == io.EOF:
		// Every holder closed the terminal: no more output will come,
		// and the program is ending if it has not ended.
		if !ended {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			select {
			case <-p.done:
				ended = true
			case <-t.C:
			}
		}
	default:
		return nil, fmt.Errorf("read the terminal of %d: %w", p.pid, err)
	}
	if !ended {
		return &proto.PtyReadResult{}, nil
	}
	r := p.result
	s.forget(a.Handle)
	return &proto.PtyReadResult{Exit: &r}, nil
}

func (s *Server) ptyResize(a proto.PtyResizeArgs) error {
	if a.Rows == 0 || a.Cols == 0 {
		return badArgs("pty-resize: %dx%d is no window size", a.Rows, a.Cols)
	}
	p, err := s.ptyProc(a.Handle)
	if err != nil {
		return err
	}
	return pty.SetSize(p.term, a.Rows, a.Cols)
}

// isDone says whether p has ended, without waiting.
func isDone(p *proc) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
