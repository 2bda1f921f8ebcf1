package benchjson

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func read(t *testing.T, path string) map[string]Entry {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var got map[string]Entry
	require.NoError(t, json.Unmarshal(b, &got))
	return got
}

func TestRecordKeepsOtherBenchmarksFigures(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", File)
	when := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, record(path, "BenchmarkBoot", Entry{When: when, Figures: map[string]float64{"s/boot": 6.2}}))
	require.NoError(t, record(path, "BenchmarkOverhead", Entry{When: when, Env: map[string]string{"kernel": "6.1"},
		Figures: map[string]float64{"tcp-MB/s": 10}, Detail: map[string]int{"reps": 5}}))
	require.NoError(t, record(path, "BenchmarkOverhead", Entry{When: when, Figures: map[string]float64{"tcp-MB/s": 12}}))

	got := read(t, path)
	require.Len(t, got, 2)
	require.Equal(t, map[string]float64{"s/boot": 6.2}, got["BenchmarkBoot"].Figures, "another benchmark's entry stays")
	require.Equal(t, map[string]float64{"tcp-MB/s": 12}, got["BenchmarkOverhead"].Figures, "a benchmark replaces its own entry")
	require.Nil(t, got["BenchmarkOverhead"].Env)
	require.True(t, when.Equal(got["BenchmarkBoot"].When))
}

func TestRecordConcurrentWritersLoseNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), File)
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		wg.Go(func() {
			require.NoError(t, record(path, name, Entry{Figures: map[string]float64{"x": 1}}))
		})
	}
	wg.Wait()
	require.Len(t, read(t, path), 8)
}

func TestRecordRefusesToOverwriteAFileItCannotRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), File)
	require.NoError(t, os.WriteFile(path, []byte("[1, 2]"), 0o644))
	require.ErrorContains(t, record(path, "x", Entry{}), "move it away")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "[1, 2]", string(b))
}

func TestMedian(t *testing.T) {
	xs := []float64{3, 1, 2}
	require.Equal(t, 2.0, Median(xs))
	require.Equal(t, []float64{3, 1, 2}, xs, "the caller's order stays")
	require.Equal(t, 3*time.Second, Median([]time.Duration{4 * time.Second, time.Second, 3 * time.Second, 2 * time.Second}))
	require.Zero(t, Median[float64](nil))
}
