package pty

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A new terminal: its slave has the size set on the master,
// and a read of the master with nothing to read ends at its deadline
// instead of blocking.
func TestOpenSizeDeadline(t *testing.T) {
	m, s, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	defer s.Close()
	if err := SetSize(m, 33, 101); err != nil {
		t.Fatal(err)
	}
	if ws, err := unix.IoctlGetWinsize(int(s.Fd()), unix.TIOCGWINSZ); err != nil || ws.Row != 33 || ws.Col != 101 {
		t.Errorf("TIOCGWINSZ = %+v, %v; want 33x101", ws, err)
	}
	m.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := m.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("idle read: %v, want a deadline error", err)
	}
	s.WriteString("hi")
	m.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 10)
	if n, err := m.Read(b); string(b[:n]) != "hi" {
		t.Errorf("master read %q, %v; want what the slave wrote", b[:n], err)
	}
}
