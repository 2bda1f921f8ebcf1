package artifacts

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFolderPerTestKeptOnlyOnFailure(t *testing.T) {
	root := t.TempDir()
	t.Setenv("L45_ARTIFACTS", root)
	t.Setenv("L45_KEEP", "")

	d, err := New("TestX/R3/drop send")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(root, RunID(), "TestX", "R3", "drop_send"), d.Path())
	require.NoError(t, d.WriteFile("a.txt", []byte("x")))
	require.Equal(t, "", d.Finish(false))
	_, err = os.Stat(d.Path())
	require.True(t, os.IsNotExist(err), "a passing test leaves nothing")

	d, err = New("TestY")
	require.NoError(t, err)
	require.NoError(t, d.WriteFile("console.txt", []byte("x")))
	require.Equal(t, d.Path(), d.Finish(true))
	require.FileExists(t, d.File("console.txt"))

	t.Setenv("L45_KEEP", "1")
	d, err = New("TestZ")
	require.NoError(t, err)
	require.Equal(t, d.Path(), d.Finish(false), "L45_KEEP keeps passing tests' evidence")

	p, err := WriteSummary("verdict.json", []byte("{}"))
	require.NoError(t, err)
	require.Equal(t, filepath.Join(root, "verdict.json"), p)
}
