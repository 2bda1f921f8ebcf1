package kernels

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"layer45/harness/cache"
)

// fakeELFKernel is an ELF file with one PT_NOTE segment holding a note of
// owner and type, the way a kernel carries its PVH entry.
func fakeELFKernel(owner string, typ uint32) []byte {
	le := binary.LittleEndian
	var note bytes.Buffer
	name := append([]byte(owner), 0)
	binary.Write(&note, le, []uint32{uint32(len(name)), 4, typ})
	note.Write(name)
	note.Write(make([]byte, int(align4(uint32(len(name))))-len(name)))
	binary.Write(&note, le, uint32(0x1000000)) // the entry address

	const ehsize, phsize = 64, 56
	b := make([]byte, ehsize+phsize)
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 2)  // ET_EXEC
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)  // EV_CURRENT
	le.PutUint64(b[32:], 64) // e_phoff
	le.PutUint16(b[52:], 64) // e_ehsize
	le.PutUint16(b[54:], 56) // e_phentsize
	le.PutUint16(b[56:], 1)  // e_phnum
	ph := b[ehsize:]
	le.PutUint32(ph[0:], 4)                   // PT_NOTE
	le.PutUint64(ph[8:], ehsize+phsize)       // p_offset
	le.PutUint64(ph[32:], uint64(note.Len())) // p_filesz
	le.PutUint64(ph[40:], uint64(note.Len())) // p_memsz
	return append(b, note.Bytes()...)
}

// fakeBzImageWith is a bzImage whose payload is compressed, followed by the
// uncompressed size as the kernel's build appends it.
func fakeBzImageWith(compressed []byte, size int) []byte {
	b := fakeBzImage("6.1.0-18-amd64 #1 SMP")
	le := binary.LittleEndian
	b[setupSectsOff] = 2
	code := 3 * 512
	b = append(b, make([]byte, code-len(b))...)
	payload := binary.LittleEndian.AppendUint32(append([]byte(nil), compressed...), uint32(size))
	le.PutUint32(b[payloadOffsetOff:], 0)
	le.PutUint32(b[payloadLengthOff:], uint32(len(payload)))
	return append(b, payload...)
}

func gzipped(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// compressedBy runs a compressor (xz, zstd) as the kernel's build does.
func compressedBy(t *testing.T, data []byte, argv ...string) []byte {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	require.NoError(t, err, "%v (make setup installs it)", argv)
	return out
}

func TestUnpackedImage(t *testing.T) {
	pvh := fakeELFKernel("Xen", xenNotePhys32Entry)
	other := fakeELFKernel("Xen", 17)
	tests := []struct {
		name    string
		image   func(t *testing.T) []byte
		want    []byte // the unpacked kernel
		noPVH   string // the NoPVHError's reason, if it is one
		wantErr string // another error
	}{
		{"gzip", func(t *testing.T) []byte { return fakeBzImageWith(gzipped(t, pvh), len(pvh)) }, pvh, "", ""},
		{"xz", func(t *testing.T) []byte {
			return fakeBzImageWith(compressedBy(t, pvh, "xz", "--check=crc32", "-c"), len(pvh))
		}, pvh, "", ""},
		{"zstd", func(t *testing.T) []byte { return fakeBzImageWith(compressedBy(t, pvh, "zstd", "-c"), len(pvh)) }, pvh, "", ""},
		{"no PVH note", func(t *testing.T) []byte { return fakeBzImageWith(gzipped(t, other), len(other)) }, nil,
			"its kernel has no PVH entry point (CONFIG_PVH is off)", ""},
		{"lz4", func(t *testing.T) []byte { return fakeBzImageWith([]byte{0x02, 0x21, 0x4c, 0x18, 1, 2, 3, 4}, 100) }, nil,
			"its payload is compressed with lz4, which the harness does not unpack", ""},
		{"truncated", func(t *testing.T) []byte { return fakeBzImageWith(gzipped(t, pvh), len(pvh)+1) }, nil, "",
			"is not a bzImage whose version can be read: its payload unpacked to"},
		{"not an ELF", func(t *testing.T) []byte {
			junk := []byte("not a kernel at all")
			return fakeBzImageWith(gzipped(t, junk), len(junk))
		}, nil, "", "its payload is not an ELF kernel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := cache.Open(t.TempDir())
			require.NoError(t, err)
			image := filepath.Join(t.TempDir(), "vmlinuz")
			require.NoError(t, os.WriteFile(image, tt.image(t), 0o644))
			k := &Kernel{Release: "6.1.0-18-amd64", Image: image}
			// Twice: the second answer comes from the cache and must agree.
			for i := 0; i < 2; i++ {
				got, err := UnpackedImage(context.Background(), c, k)
				var np *NoPVHError
				switch {
				case tt.noPVH != "":
					require.ErrorAs(t, err, &np)
					require.Equal(t, tt.noPVH, np.Reason)
				case tt.wantErr != "":
					require.ErrorContains(t, err, tt.wantErr)
					require.False(t, errors.As(err, &np), "a broken image is not a reason to boot the bzImage")
				default:
					require.NoError(t, err)
					data, err := os.ReadFile(got)
					require.NoError(t, err)
					require.Equal(t, tt.want, data)
				}
			}
		})
	}
}
