package shell

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"layer45/harness/agent"
)

// Host is the host's end: l45's standard input and output.
type Host struct {
	In, Out *os.File
	raw     atomic.Bool
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Size is the window size of the host's terminal (In's, else Out's);
// false when neither is a terminal.
func (h *Host) Size() (rows, cols uint16, ok bool) {
	for _, f := range []*os.File{h.In, h.Out} {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Row > 0 && ws.Col > 0 {
			return ws.Row, ws.Col, true
		}
	}
	return 0, 0, false
}

// Term is the TERM for the guest's program: the host's when the input is a
// terminal, "dumb" for piped input.
func (h *Host) Term() string {
	if t := os.Getenv("TERM"); t != "" && IsTerminal(h.In) {
		return t
	}
	return "dumb"
}

// Newline ends a line l45 prints itself while the session runs: "\r\n"
// while the terminal is raw (no output processing), "\n" otherwise.
func (h *Host) Newline() string {
	if h.raw.Load() {
		return "\r\n"
	}
	return "\n"
}

// Attach bridges In and Out to the guest's program until it ends. When In
// is a terminal it is put in raw mode, so that line editing, Ctrl-C and
// Ctrl-Z reach the guest, and restored on every way out: at the end, on
// an error, and at once on SIGINT, SIGTERM, SIGHUP or SIGQUIT, which also
// end the session. The window size goes to the guest at each SIGWINCH.
func (h *Host) Attach(ctx context.Context, r Remote) (*agent.Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	restore := func() {}
	if IsTerminal(h.In) {
		undo, err := makeRaw(h.In)
		if err != nil {
			return nil, err
		}
		var once sync.Once
		restore = func() {
			once.Do(func() {
				undo()
				h.raw.Store(false)
			})
		}
		h.raw.Store(true)
	}
	defer restore()

	ends := make(chan os.Signal, 1)
	signal.Notify(ends, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(ends)
	go func() {
		select {
		case <-ends:
			// Before anything else: another handler may end the
			// process (harness/vm stops its guests and exits).
			restore()
			cancel()
		case <-ctx.Done():
		}
	}()
	resized := make(chan os.Signal, 1)
	signal.Notify(resized, unix.SIGWINCH)
	defer signal.Stop(resized)
	return Bridge(ctx, r, h.In, h.Out, resized, h.Size)
}

// makeRaw puts the terminal f in raw mode, as cfmakeraw does, and returns
// what restores its settings.
func makeRaw(f *os.File) (restore func(), err error) {
	fd := int(f.Fd())
	saved, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("read the terminal's settings: %w", err)
	}
	raw := *saved
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, fmt.Errorf("put the terminal in raw mode: %w", err)
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, saved) }, nil
}
