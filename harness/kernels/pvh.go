package kernels

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"layer45/harness/cache"
)

// Why guests boot an unpacked kernel: under TCG, a bzImage spends about 3 s
// of a 7 s boot in its own decompressor (xz or zstd, emulated instruction
// by instruction). QEMU boots the ELF inside the bzImage directly through
// the PVH entry point (CONFIG_PVH, set in every Debian kernel), so the
// harness unpacks it once on the host and caches it.

// More setup header fields (boot protocol 2.08+).
const (
	setupSectsOff    = 0x1F1 // u8: 512-byte setup sectors after the boot sector
	payloadOffsetOff = 0x248 // u32: payload offset in the protected-mode code
	payloadLengthOff = 0x24C // u32: payload length
)

// xenNotePhys32Entry is the ELF note (owner "Xen") giving the 32-bit PVH
// entry point: without it QEMU cannot boot the ELF.
const xenNotePhys32Entry = 18

// NoPVHError says why a kernel is booted as its bzImage.
type NoPVHError struct {
	Image, Reason string
}

func (e *NoPVHError) Error() string {
	return fmt.Sprintf("%s cannot be booted unpacked (PVH): %s", e.Image, e.Reason)
}

// payload is the compressed kernel inside a bzImage and its format.
type payload struct {
	format string // gzip, xz, zstd, or what the magic suggests
	data   []byte
	size   uint32 // the uncompressed size the kernel's build appended
}

var payloadMagics = []struct {
	magic  []byte
	format string
}{
	{[]byte{0x1f, 0x8b}, "gzip"},
	{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "xz"},
	{[]byte{0x28, 0xb5, 0x2f, 0xfd}, "zstd"},
	{[]byte{0x02, 0x21, 0x4c, 0x18}, "lz4"},
	{[]byte("BZh"), "bzip2"},
	{[]byte{0x89, 'L', 'Z', 'O'}, "lzo"},
	{[]byte{0x5d, 0, 0}, "lzma"},
}

// readPayload finds the compressed kernel in the bzImage at path.
func readPayload(path string) (*payload, error) {
	if _, err := ImageVersion(path); err != nil {
		return nil, err
	}
	img, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if len(img) < payloadLengthOff+4 || le.Uint16(img[protocolOff:]) < 0x208 {
		return nil, &NoPVHError{Image: path, Reason: "boot protocol older than 2.08 has no payload fields"}
	}
	sects := int(img[setupSectsOff])
	if sects == 0 {
		sects = 4 // the boot protocol's rule for old images
	}
	start := (sects+1)*512 + int(le.Uint32(img[payloadOffsetOff:]))
	end := start + int(le.Uint32(img[payloadLengthOff:]))
	if start < 0 || end > len(img) || end-start < 8 {
		return nil, &ImageError{Path: path, Problem: fmt.Sprintf("payload [%#x, %#x) is outside the file (%d bytes)", start, end, len(img))}
	}
	p := &payload{data: img[start:end], size: le.Uint32(img[end-4:]), format: "unknown"}
	for _, m := range payloadMagics {
		if bytes.HasPrefix(p.data, m.magic) {
			p.format = m.format
			break
		}
	}
	return p, nil
}

// unpack decompresses the payload. The kernel's build appends the
// uncompressed size after the compressed stream; the tools stop at the end
// of their stream, and the size checks they produced all of it.
func (p *payload) unpack(ctx context.Context, image string) ([]byte, error) {
	var out []byte
	var err error
	switch p.format {
	case "gzip":
		var r *gzip.Reader
		if r, err = gzip.NewReader(bytes.NewReader(p.data)); err == nil {
			r.Multistream(false)
			out, err = io.ReadAll(r)
		}
	case "xz", "zstd":
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, p.format, "-dc")
		cmd.Stdin, cmd.Stderr = bytes.NewReader(p.data), &stderr
		out, err = cmd.Output()
		if err != nil && len(out) == int(p.size) {
			// xz and zstd complain about the size appended after their
			// stream; the output is complete, which the size proves.
			err = nil
		}
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("unpacking %s needs the %s program (Debian package %s): run make setup", image, p.format, map[string]string{"xz": "xz-utils", "zstd": "zstd"}[p.format])
		}
		if err != nil {
			err = fmt.Errorf("%s -dc: %v: %s", p.format, err, bytes.TrimSpace(stderr.Bytes()))
		}
	default:
		return nil, &NoPVHError{Image: image, Reason: "its payload is compressed with " + p.format + ", which the harness does not unpack"}
	}
	if err != nil {
		return nil, &ImageError{Path: image, Problem: "unpacking its " + p.format + " payload: " + err.Error()}
	}
	if len(out) != int(p.size) {
		return nil, &ImageError{Path: image, Problem: fmt.Sprintf("its payload unpacked to %d bytes, the image says %d", len(out), p.size)}
	}
	return out, nil
}

// hasPVHEntry reports whether the ELF kernel has the PVH entry note.
func hasPVHEntry(vmlinux []byte) (bool, error) {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return false, err
	}
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(prog.Open())
		if err != nil {
			return false, err
		}
		for len(notes) >= 12 {
			le := binary.LittleEndian
			nameLen, descLen, typ := le.Uint32(notes), le.Uint32(notes[4:]), le.Uint32(notes[8:])
			nameEnd := 12 + align4(nameLen)
			next := nameEnd + align4(descLen)
			if next > uint32(len(notes)) {
				break
			}
			if string(bytes.TrimRight(notes[12:12+nameLen], "\x00")) == "Xen" && typ == xenNotePhys32Entry {
				return true, nil
			}
			notes = notes[next:]
		}
	}
	return false, nil
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }

// UnpackedImage returns the ELF kernel inside k's bzImage, unpacked once
// into the cache, for QEMU to boot through PVH. A *NoPVHError says the
// kernel must be booted as its bzImage (no PVH entry, or a compression the
// harness does not unpack); any other error is a broken image or a missing
// tool.
func UnpackedImage(ctx context.Context, c *cache.Cache, k *Kernel) (string, error) {
	sum, err := cache.HashFiles(k.Image)
	if err != nil {
		return "", err
	}
	// The image is read for its payload only when the cache has no entry.
	dir, err := c.Get(ctx, cache.Key("vmlinux-"+k.Release, sum), func(ctx context.Context, dir string) error {
		p, err := readPayload(k.Image)
		if err != nil {
			return err
		}
		elfKernel, err := p.unpack(ctx, k.Image)
		if err != nil {
			return err
		}
		ok, err := hasPVHEntry(elfKernel)
		if err != nil {
			return &ImageError{Path: k.Image, Problem: "its payload is not an ELF kernel: " + err.Error()}
		}
		if !ok {
			// Recorded, so later runs do not unpack it again to learn this.
			return os.WriteFile(filepath.Join(dir, "no-pvh"), nil, 0o644)
		}
		return os.WriteFile(filepath.Join(dir, "vmlinux"), elfKernel, 0o644)
	})
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "no-pvh")); err == nil {
		return "", &NoPVHError{Image: k.Image, Reason: "its kernel has no PVH entry point (CONFIG_PVH is off)"}
	}
	return filepath.Join(dir, "vmlinux"), nil
}
