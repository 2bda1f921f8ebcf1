package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGetBuildsOnceUnderConcurrency(t *testing.T) {
	c, err := Open(t.TempDir())
	require.NoError(t, err)
	var builds atomic.Int32
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	for i := range dirs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d, err := c.Get(context.Background(), "thing-1", func(_ context.Context, dir string) error {
				builds.Add(1)
				return os.WriteFile(filepath.Join(dir, "x"), []byte("y"), 0o644)
			})
			require.NoError(t, err)
			dirs[i] = d
		}(i)
	}
	wg.Wait()
	require.EqualValues(t, 1, builds.Load())
	for _, d := range dirs {
		require.Equal(t, dirs[0], d)
	}
	b, err := os.ReadFile(filepath.Join(dirs[0], "x"))
	require.NoError(t, err)
	require.Equal(t, "y", string(b))
}

func TestFailedBuildLeavesNothingAndIncompleteEntryIsRebuilt(t *testing.T) {
	c, err := Open(t.TempDir())
	require.NoError(t, err)
	boom := errors.New("boom")
	_, err = c.Get(context.Background(), "k", func(context.Context, string) error { return boom })
	require.ErrorIs(t, err, boom)
	entries, _ := os.ReadDir(c.Root())
	for _, e := range entries {
		require.NotContains(t, e.Name(), ".build-", "temporary build directory left behind")
	}

	// An entry without its completion marker is what a killed build leaves.
	require.NoError(t, os.MkdirAll(filepath.Join(c.Root(), "k"), 0o755))
	rebuilt := false
	_, err = c.Get(context.Background(), "k", func(_ context.Context, dir string) error {
		rebuilt = true
		return nil
	})
	require.NoError(t, err)
	require.True(t, rebuilt)
}

func TestKeyDependsOnEveryPartAndItsBoundaries(t *testing.T) {
	require.Equal(t, Key("k", "a", "b"), Key("k", "a", "b"))
	require.NotEqual(t, Key("k", "ab", ""), Key("k", "a", "b"))
	require.NotEqual(t, Key("k", "a"), Key("j", "a"))
}

func TestInvalidKeyRejected(t *testing.T) {
	c, err := Open(t.TempDir())
	require.NoError(t, err)
	for _, k := range []string{"", "../x", ".hidden", "a/b"} {
		_, err := c.Get(context.Background(), k, func(context.Context, string) error { return nil })
		require.Error(t, err, k)
	}
}

func TestHashFilesSeesContentChanges(t *testing.T) {
	d := t.TempDir()
	f := filepath.Join(d, "a.c")
	require.NoError(t, os.WriteFile(f, []byte("1"), 0o644))
	h1, err := HashFiles(d)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(f, []byte("2"), 0o644))
	h2, err := HashFiles(d)
	require.NoError(t, err)
	require.NotEqual(t, h1, h2)
}
