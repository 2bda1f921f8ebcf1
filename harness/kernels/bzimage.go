package kernels

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
)

// The x86 boot protocol's setup header (Documentation/arch/x86/boot.rst):
// offsets in the bzImage file.
const (
	bootFlagOff      = 0x1FE // u16 0xAA55
	headerMagicOff   = 0x202 // "HdrS"
	protocolOff      = 0x206 // u16 boot protocol version
	kernelVersionOff = 0x20E // u16: the version string's offset - 0x200
	// maxVersion bounds the version string ("6.1.0-18-amd64
	// (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian ...").
	maxVersion = 512
)

// ImageError is a file that is not a bzImage whose version can be read.
type ImageError struct {
	Path, Problem string
}

func (e *ImageError) Error() string {
	return fmt.Sprintf("%s is not a bzImage whose version can be read: %s", e.Path, e.Problem)
}

// ImageVersion reads the version string a bzImage carries for boot
// loaders (what /proc/version starts with), without running file(1).
func ImageVersion(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	bad := func(format string, args ...any) (string, error) {
		return "", &ImageError{Path: path, Problem: fmt.Sprintf(format, args...)}
	}
	hdr := make([]byte, kernelVersionOff+2)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return bad("shorter than a setup header (%v)", err)
	}
	le := binary.LittleEndian
	if flag := le.Uint16(hdr[bootFlagOff:]); flag != 0xAA55 {
		return bad("boot flag %#04x, want 0xaa55", flag)
	}
	if magic := hdr[headerMagicOff : headerMagicOff+4]; string(magic) != "HdrS" {
		return bad("header magic %q, want \"HdrS\" (a kernel older than boot protocol 2.00, or not a kernel)", magic)
	}
	if proto := le.Uint16(hdr[protocolOff:]); proto < 0x200 {
		return bad("boot protocol %#x predates the version string (2.00)", proto)
	}
	off := le.Uint16(hdr[kernelVersionOff:])
	if off == 0 {
		return bad("its setup header points at no version string")
	}
	buf := make([]byte, maxVersion)
	n, err := f.ReadAt(buf, int64(off)+0x200)
	if n == 0 {
		return bad("version string at %#x is past the end (%v)", int(off)+0x200, err)
	}
	end := bytes.IndexByte(buf[:n], 0)
	if end <= 0 {
		return bad("no NUL-terminated version string at %#x", int(off)+0x200)
	}
	v := string(buf[:end])
	for _, r := range v {
		if r < ' ' || r > '~' {
			return bad("version string at %#x is not text: %q", int(off)+0x200, v)
		}
	}
	return v, nil
}

// ImageRelease is the release (uname -r) of a bzImage: its version
// string's first word.
func ImageRelease(path string) (string, error) {
	v, err := ImageVersion(path)
	if err != nil {
		return "", err
	}
	rel, _, _ := strings.Cut(v, " ")
	return rel, nil
}
