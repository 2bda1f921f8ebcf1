package kmsg

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// Device is /dev/kmsg opened for non-blocking reads.
type Device struct {
	fd  int
	buf []byte
	// Lost counts records the kernel overwrote before they were read
	// (EPIPE from read).
	Lost int
}

// Open opens the kmsg device at path (normally /dev/kmsg) without blocking.
// With fromEnd, reading starts after the newest record, so only records
// logged after Open are returned; otherwise it starts at the oldest record
// still in the buffer.
func Open(path string, fromEnd bool) (*Device, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if fromEnd {
		if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("seek %s: %w", path, err)
		}
	}
	// A record is at most about 8 KiB with its dictionary; read(2) with a
	// smaller buffer fails with EINVAL.
	return &Device{fd: fd, buf: make([]byte, 16<<10)}, nil
}

// Next returns the next record, or io.EOF when there is none right now.
func (d *Device) Next() (string, error) {
	for {
		n, err := unix.Read(d.fd, d.buf)
		switch {
		case err == nil && n == 0:
			return "", io.EOF
		case err == nil:
			return string(d.buf[:n]), nil
		case errors.Is(err, unix.EAGAIN):
			return "", io.EOF
		case errors.Is(err, unix.EPIPE):
			d.Lost++ // overwritten; the next read goes on from the oldest kept
		case errors.Is(err, unix.EINTR):
		default:
			return "", fmt.Errorf("read kmsg: %w", err)
		}
	}
}

// Close closes the device.
func (d *Device) Close() error { return unix.Close(d.fd) }
