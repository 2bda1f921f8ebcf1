// Package pty opens pseudo-terminals and sizes them with system calls
// alone (no cgo: the agent is static). The agent starts interactive
// programs on them; host tests use them to stand in for a person's
// terminal.
package pty

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotPollable is returned by Open when the master cannot take
// deadlines: a read on it could then block its reader for ever, and the
// agent (PID 1) must never block that way.
var ErrNotPollable = errors.New("pseudo-terminal master does not take deadlines")

// Open opens a new pseudo-terminal as posix_openpt, unlockpt and ptsname
// do (/dev/ptmx, TIOCSPTLCK, TIOCGPTN), and its slave, which does not
// become the caller's controlling terminal. The master takes read and
// write deadlines.
func Open() (master, slave *os.File, err error) {
	// os.OpenFile registers the descriptor with the runtime's poller,
	// which is what makes deadlines work.
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open a pseudo-terminal: %w", err)
	}
	if err := m.SetDeadline(time.Time{}); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("%w: %w", ErrNotPollable, err)
	}
	var n uint32
	err = control(m, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlock the pseudo-terminal: %w", err)
		}
		var err error
		if n, err = unix.IoctlGetUint32(fd, unix.TIOCGPTN); err != nil {
			return fmt.Errorf("pseudo-terminal number: %w", err)
		}
		return nil
	})
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	path := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	s, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("open the pseudo-terminal's slave %s: %w", path, err)
	}
	return m, s, nil
}

// SetSize sets the terminal's window size (TIOCSWINSZ); the kernel sends
// SIGWINCH to its foreground process group when it changes.
func SetSize(f *os.File, rows, cols uint16) error {
	return control(f, func(fd int) error {
		if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
			return fmt.Errorf("set the terminal's size to %dx%d: %w", rows, cols, err)
		}
		return nil
	})
}

// control runs fn on f's descriptor. Unlike f.Fd, it leaves a pollable
// file non-blocking, so its deadlines keep working.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
