// Package benchjson keeps every benchmark's latest figures in one JSON file
// at the top of the evidence root (_artifacts/bench.json, or under
// $L45_ARTIFACTS) for a nightly job to plot over time. The file is one
// object, an Entry per benchmark name; each benchmark replaces its own
// entry and leaves the others' as they are, also when benchmarks of
// several test processes write at once.
package benchjson

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"layer45/harness/artifacts"
)

// File is the figures file's name in the evidence root.
const File = "bench.json"

// Entry is one benchmark's figures.
type Entry struct {
	When time.Time `json:"when"`
	// Env is what the figures depend on (kernel release, accelerator).
	Env map[string]string `json:"env,omitempty"`
	// Figures are what a plot shows, by name with the unit in it
	// ("tcp-MB/s:no-l45").
	Figures map[string]float64 `json:"figures"`
	// Detail is whatever else explains the figures: settings, samples.
	Detail any `json:"detail,omitempty"`
}

// Record makes e the entry of the benchmark name in the figures file and
// returns the file's path.
func Record(name string, e Entry) (string, error) {
	path := filepath.Join(artifacts.Root(), File)
	return path, record(path, name, e)
}

func record(path, name string, e Entry) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("benchmark figures: %w", err)
	}
	// The lock is a file of its own: the figures file is replaced by
	// rename, which would leave a lock on it behind.
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("benchmark figures: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("benchmark figures: lock %s: %w", lock.Name(), err)
	}
	entries := map[string]json.RawMessage{}
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		// Another benchmark's figures are never dropped for a file this
		// one cannot read.
		if err := json.Unmarshal(old, &entries); err != nil {
			return fmt.Errorf("benchmark figures: %s is not a JSON object of entries (move it away): %w", path, err)
		}
	case !os.IsNotExist(err):
		return fmt.Errorf("benchmark figures: %w", err)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("benchmark figures of %s: %w", name, err)
	}
	entries[name] = raw
	out, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return fmt.Errorf("benchmark figures: %w", err)
	}
	// Write then rename: a reader never sees half a file.
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, append(out, '\n'), 0o644); err != nil {
		return fmt.Errorf("benchmark figures: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("benchmark figures: %w", err)
	}
	return nil
}

// Median is the middle of xs (the upper middle for an even count; the
// zero value for none). xs is left as it was.
func Median[T cmp.Ordered](xs []T) T {
	if len(xs) == 0 {
		var zero T
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
