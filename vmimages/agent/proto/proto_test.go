package proto

import (
	"os"
	"testing"
)

func TestModeBitsRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		bits uint32
	}{
		{0o644, 0o644},
		{0o755 | os.ModeSetuid, 0o4755},
		{0o755 | os.ModeSetgid, 0o2755},
		{0o777 | os.ModeSticky, 0o1777},
		{0o700 | os.ModeSetuid | os.ModeSetgid | os.ModeSticky, 0o7700},
	} {
		if got := ModeBits(tt.mode); got != tt.bits {
			t.Errorf("ModeBits(%v) = %o, want %o", tt.mode, got, tt.bits)
		}
		if got := FileMode(tt.bits); got != tt.mode {
			t.Errorf("FileMode(%o) = %v, want %v", tt.bits, got, tt.mode)
		}
	}
}
