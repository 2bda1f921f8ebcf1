package pty

import (
	"errors"
	"os"
	"testing"
	"time"
)

// A new terminal: its slave opens, its size goes round, and a read of the
// master with nothing to read ends at its deadline instead of blocking.
func TestOpenSizeDeadline(t *testing.T) {
	m, path, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := OpenSlave(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := SetSize(m, 33, 101); err != nil {
		t.Fatal(err)
	}
	if rows, cols, err := Size(s); err != nil || rows != 33 || cols != 101 {
		t.Errorf("Size = %dx%d, %v; want 33x101", rows, cols, err)
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
	f, err := os.CreateTemp(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := Size(f); err == nil {
		t.Error("Size of a file that is no terminal succeeded")
	}
}
