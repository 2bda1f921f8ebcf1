// Package shell is the host side of an interactive program in a guest (l45
// shell): it bridges the host's terminal, in raw mode, to a program on a
// terminal in the guest (agent.Pty), passing the window size along, and
// works as well with input that is not a terminal (a pipe, for tests).
package shell

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"layer45/harness/agent"
)

// Remote is the guest end: a program on a terminal (*agent.Pty).
type Remote interface {
	Write(ctx context.Context, data []byte) (int, error)
	Read(ctx context.Context, wait time.Duration) ([]byte, *agent.Result, error)
	Resize(ctx context.Context, rows, cols uint16) error
}

const (
	// idleWait is how long a read waits for output while the host has no
	// input: the protocol takes one call at a time, so it is also the
	// longest a keystroke waits before it is sent.
	idleWait = 50 * time.Millisecond
	// busyWait is the read's wait while input is left that the guest's
	// terminal did not take yet.
	busyWait = 5 * time.Millisecond
	// callTimeout: a guest that takes longer to answer one call has
	// stopped answering.
	callTimeout = time.Minute
)

// ctrlD is the terminal's end-of-file character.
const ctrlD = 0x04

// Bridge copies in to the remote terminal and its output to out until the
// program ends, and returns how it ended. End of file on in is typed as
// Ctrl-D, the terminal's end of file. Each value from resized sends the
// window size that size gives (false: none to send).
func Bridge(ctx context.Context, r Remote, in io.Reader, out io.Writer, resized <-chan os.Signal, size func() (rows, cols uint16, ok bool)) (*agent.Result, error) {
	stop := make(chan struct{})
	defer close(stop)
	input := make(chan []byte)
	go readInput(in, input, stop)

	var pending []byte
	eofSent := false
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	collect:
		for {
			select {
			case b, ok := <-input:
				if !ok {
					input = nil
					if !eofSent {
						pending = append(pending, ctrlD)
						eofSent = true
					}
					continue
				}
				pending = append(pending, b...)
			case <-resized:
				if rows, cols, ok := size(); ok {
					if err := call(ctx, func(ctx context.Context) error { return r.Resize(ctx, rows, cols) }); err != nil {
						return nil, err
					}
				}
			default:
				break collect
			}
		}
		if len(pending) > 0 {
			var n int
			if err := call(ctx, func(ctx context.Context) (err error) {
				n, err = r.Write(ctx, pending)
				return err
			}); err != nil {
				return nil, err
			}
			pending = pending[n:]
		}
		wait := idleWait
		if len(pending) > 0 {
			wait = busyWait
		}
		var data []byte
		var res *agent.Result
		err := call(ctx, func(ctx context.Context) (err error) {
			data, res, err = r.Read(ctx, wait)
			return err
		})
		if err != nil {
			return nil, err
		}
		if _, err := out.Write(data); err != nil {
			return nil, fmt.Errorf("write the guest's output: %w", err)
		}
		if res != nil {
			return res, nil
		}
	}
}

// call runs one call to the remote end, bounded so that a guest that
// stopped answering ends the session.
func call(ctx context.Context, f func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := f(cctx); err != nil {
		return fmt.Errorf("the guest's terminal: %w", err)
	}
	return nil
}

// readInput sends what it reads from in until in ends, then closes ch. A
// read of the host's terminal cannot be interrupted: once stop is closed
// the goroutine drops what it still reads and ends at the next one.
func readInput(in io.Reader, ch chan<- []byte, stop <-chan struct{}) {
	defer close(ch)
	buf := make([]byte, 4096)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			select {
			case ch <- append([]byte(nil), buf[:n]...):
			case <-stop:
				return
			}
		}
		if err != nil {
			return
		}
	}
}
