package initramfs

import (
	"fmt"
	"io"
)

// cpioWriter writes the "newc" archive format the kernel unpacks into its
// initial root file system.
type cpioWriter struct {
	w     io.Writer
	ino   uint32
	off   int64
	err   error
	trail bool
}

func newCPIOWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

const (
	cpioModeDir     = 0o040000
	cpioModeFile    = 0o100000
	cpioModeSymlink = 0o120000
)

func (c *cpioWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.off += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.off % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// entry writes one header, name and body; mode includes the type bits.
func (c *cpioWriter) entry(name string, mode uint32, body io.Reader, size int64) error {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.ino++
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	if body != nil && c.err == nil {
		n, err := io.CopyN(c.w, body, size)
		c.off += n
		if err != nil {
			c.err = fmt.Errorf("cpio: %s: %w", name, err)
		}
	}
	c.pad()
	return c.err
}

func (c *cpioWriter) close() error {
	if !c.trail {
		c.trail = true
		c.entry("TRAILER!!!", 0, nil, 0)
	}
	return c.err
}
