package agent

import (
	"context"
	"time"

	"layer45/vmimages/agent/proto"
)

// PtyCmd is a program to start on a terminal in the guest.
type PtyCmd struct {
	Argv []string
	// Env entries are added to the agent's default environment, as for
	// Cmd.
	Env []string
	// Dir is the working directory; empty means /.
	Dir string
	// Term is TERM; empty keeps the agent's default (linux).
	Term string
	// Rows and Cols are the initial window size; zero leaves 0x0.
	Rows, Cols uint16
}

// Pty is a program running on a pseudo-terminal in the guest, in a
// session of its own with that terminal as its controlling terminal. The
// embedded Process's Wait and Signal work on it too; Wait and Signal give
// up what it has not read of its output.
type Pty struct {
	*Process
}

// StartPty starts a program on a new terminal in the guest.
func (c *Client) StartPty(ctx context.Context, cmd PtyCmd) (*Pty, error) {
	a := proto.PtyStartArgs{Argv: cmd.Argv, Env: cmd.Env, Dir: cmd.Dir, Term: cmd.Term, Rows: cmd.Rows, Cols: cmd.Cols}
	var r proto.StartResult
	if err := c.call(ctx, proto.VerbPtyStart, a, &r); err != nil {
		return nil, err
	}
	return &Pty{&Process{ID: r.Handle, Pid: r.Pid, Argv: cmd.Argv, c: c}}, nil
}

// Write types data on the terminal and returns how much of it the
// terminal took: less than all when the program is not reading and the
// terminal's input buffer is full. Once the program has ended, input is
// dropped.
func (p *Pty) Write(ctx context.Context, data []byte) (int, error) {
	var r proto.PtyWriteResult
	if err := p.c.call(ctx, proto.VerbPtyWrite, proto.PtyWriteArgs{Handle: p.ID, Data: data}, &r); err != nil {
		return 0, err
	}
	return r.N, nil
}

// Read returns the terminal's output, waiting up to wait for some (the
// agent answers as soon as there is output). Once the program has ended
// and all its output was read, it returns how the program ended instead;
// the handle is then gone.
func (p *Pty) Read(ctx context.Context, wait time.Duration) ([]byte, *Result, error) {
	var r proto.PtyReadResult
	if err := p.c.call(ctx, proto.VerbPtyRead, proto.PtyReadArgs{Handle: p.ID, Wait: wait}, &r); err != nil {
		return nil, nil, err
	}
	if r.Exit != nil {
		return nil, p.c.newResult(p.Argv, r.Exit), nil
	}
	return r.Data, nil, nil
}

// Resize sets the terminal's window size; the program gets SIGWINCH.
func (p *Pty) Resize(ctx context.Context, rows, cols uint16) error {
	return p.c.call(ctx, proto.VerbPtyResize, proto.PtyResizeArgs{Handle: p.ID, Rows: rows, Cols: cols}, nil)
}
