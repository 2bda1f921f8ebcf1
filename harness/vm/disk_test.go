package vm

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// NewDisk makes a sparse image of the asked size holding an ext4 file
// system (superblock magic 0xEF53 at byte 1024+56).
func TestNewDiskIsExt4(t *testing.T) {
	path := NewDisk(t, 16)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.EqualValues(t, 16<<20, st.Size())
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	magic := make([]byte, 2)
	_, err = f.ReadAt(magic, 1024+56)
	require.NoError(t, err)
	require.EqualValues(t, 0xEF53, binary.LittleEndian.Uint16(magic))
}
