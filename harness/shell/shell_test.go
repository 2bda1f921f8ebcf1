package shell

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"layer45/harness/agent"
	"layer45/vmimages/agent/pty"
	"layer45/vmimages/agent/server"
)

// fakeRemote takes at most two bytes a write (a terminal whose input
// buffer is full) and ends the program when it has been typed Ctrl-D, or
// when ended says so.
type fakeRemote struct {
	mu      sync.Mutex
	typed   []byte
	resizes []string
	ended   func(f *fakeRemote) bool
}

func (f *fakeRemote) Write(ctx context.Context, data []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(len(data), 2)
	f.typed = append(f.typed, data[:n]...)
	return n, nil
}

func (f *fakeRemote) Read(ctx context.Context, wait time.Duration) ([]byte, *agent.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if bytes.HasSuffix(f.typed, []byte{ctrlD}) || (f.ended != nil && f.ended(f)) {
		return nil, &agent.Result{ExitCode: 4}, nil
	}
	return []byte("."), nil, nil
}

func (f *fakeRemote) Resize(ctx context.Context, rows, cols uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resizes = append(f.resizes, fmt.Sprintf("%dx%d", rows, cols))
	return nil
}

// Piped input is typed whole even when the terminal takes it bit by bit,
// and its end is typed as Ctrl-D.
func TestBridgePipedInput(t *testing.T) {
	f := &fakeRemote{}
	var out bytes.Buffer
	res, err := Bridge(context.Background(), f, strings.NewReader("uname -r; exit\n"), &out, nil, nil)
	if err != nil || res.ExitCode != 4 {
		t.Fatalf("Bridge = %+v, %v", res, err)
	}
	if string(f.typed) != "uname -r; exit\n\x04" {
		t.Errorf("typed %q", f.typed)
	}
	if !strings.HasPrefix(out.String(), ".") {
		t.Errorf("output %q", out.String())
	}
}

// The real agent server with a real terminal: a shell fed from a pipe
// runs the commands and its exit status comes back.
func TestBridgeRealShell(t *testing.T) {
	host, guest := net.Pipe()
	go server.New(server.Config{}).Serve(guest)
	defer guest.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := agent.Dial(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.StartPty(ctx, agent.PtyCmd{Argv: []string{"/bin/sh"}, Term: "dumb", Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := Bridge(ctx, p, strings.NewReader("echo $((6*7)); stty size\nexit 5\n"), &out, nil, nil)
	if err != nil || res.ExitCode != 5 {
		t.Fatalf("Bridge = %+v, %v; output:\n%s", res, err, out.String())
	}
	if !strings.Contains(out.String(), "42\r\n24 80\r\n") {
		t.Errorf("output lacks the commands' output:\n%q", out.String())
	}
}

// On a terminal, the session runs in raw mode, the window size follows
// SIGWINCH, and the terminal's settings are back as they were after it.
func TestAttachRawModeAndSize(t *testing.T) {
	master, term, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer term.Close()
	if err := pty.SetSize(master, 33, 101); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(term.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	h := &Host{In: term, Out: term}
	if rows, cols, ok := h.Size(); !ok || rows != 33 || cols != 101 {
		t.Errorf("Size = %dx%d, %v", rows, cols, ok)
	}
	var during *unix.Termios
	f := &fakeRemote{ended: func(f *fakeRemote) bool {
		if during == nil {
			during, _ = unix.IoctlGetTermios(int(term.Fd()), unix.TCGETS)
			if err := pty.SetSize(master, 40, 120); err != nil {
				t.Error(err)
			}
			syscall.Kill(os.Getpid(), syscall.SIGWINCH)
		}
		return len(f.resizes) > 0
	}}
	// Drain the output so that the session never blocks writing it.
	go func() {
		b := make([]byte, 1024)
		for {
			if _, err := master.Read(b); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := h.Attach(ctx, f)
	if err != nil || res.ExitCode != 4 {
		t.Fatalf("Attach = %+v, %v", res, err)
	}
	if during == nil || during.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG) != 0 || during.Oflag&unix.OPOST != 0 {
		t.Errorf("the terminal was not raw during the session: %+v", during)
	}
	after, err := unix.IoctlGetTermios(int(term.Fd()), unix.TCGETS)
	if err != nil || *after != *before {
		t.Errorf("settings after the session %+v, want %+v (%v)", after, before, err)
	}
	if strings.Join(f.resizes, " ") != "40x120" {
		t.Errorf("resizes %v, want 40x120", f.resizes)
	}
	if h.Newline() != "\n" {
		t.Error("Newline is still raw's")
	}
}
