package cache

// Eviction keeps the cache under a bound, removing least recently used
// entries first and never an entry in use.
//
// Per entry KEY the cache root holds two lock files:
//
//	.KEY.lock  build lock: held exclusively while KEY is built (or evicted)
//	.KEY.use   use lock: held shared by every Cache that handed KEY out, for
//	           the rest of its process (or until Release); its mtime is the
//	           entry's last use, set on every Get
//
// An evictor takes both exclusively without waiting and skips the entry if
// either is busy; holding them, it renames the entry out of the way
// (.trash-*), unlinks both lock files and lets go, then deletes the tree.
// Evictors serialise on .prune.mutex (not named like a lock file of an
// entry, so no key can collide with it) so two never choose victims from
// the same stale total.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is a complete entry of the cache.
type Entry struct {
	Key     string
	Kind    string // the family leading the key: kernel, initramfs, modules...
	Dir     string
	Size    int64     // disk usage in bytes, as du counts it
	LastUse time.Time // last Get by any process (its build time if never since)
	InUse   bool      // claimed by a process (or being built); List fills it
}

// PruneResult says what a Prune or Clean did.
type PruneResult struct {
	Removed []Entry // evicted, least recently used first
	InUse   []Entry // would have been evicted but are in use
	Freed   int64   // bytes removed
	Total   int64   // size of the entries left
	Max     int64   // the bound pruned to
	Debris  int     // leftovers of killed builds and evictions removed
}

// Over is how many bytes the cache still is over the bound.
func (r *PruneResult) Over() int64 {
	if r.Max < 0 || r.Total <= r.Max {
		return 0
	}
	return r.Total - r.Max
}

// keyShape matches the keys Key makes: kind, a dash, 20 hex digits.
var keyShape = regexp.MustCompile(`^([^.].*)-[0-9a-f]{20}$`)

// kindOf is the entry's family: the first word of the kind Key was given.
func kindOf(key string) string {
	if m := keyShape.FindStringSubmatch(key); m != nil {
		key = m[1]
	}
	kind, _, _ := strings.Cut(key, "-")
	return kind
}

// List returns the complete entries, least recently used first, with their
// sizes and whether they are in use. Sizing an entry built before sizes
// were recorded walks its tree; progress, if not nil, hears about that.
func (c *Cache) List(ctx context.Context, progress io.Writer) ([]Entry, error) {
	entries, err := c.scan(ctx, progress)
	if err != nil {
		return nil, err
	}
	for i := range entries {
		entries[i].InUse = c.inUse(entries[i].Key)
	}
	return entries, nil
}

// Prune evicts least recently used entries not in use until the cache is at
// most max bytes. Removing a tree is reported to progress if not nil.
func (c *Cache) Prune(ctx context.Context, max int64, progress io.Writer) (*PruneResult, error) {
	return c.prune(ctx, max, "", false, progress)
}

// Clean removes every entry not in use and the debris of killed builds.
func (c *Cache) Clean(ctx context.Context, progress io.Writer) (*PruneResult, error) {
	return c.prune(ctx, 0, "", true, progress)
}

// evictAfterBuild brings the cache back under its bound after Get built
// keep, which it never evicts. Failing to evict does not fail the Get: it
// is reported to c.Log.
func (c *Cache) evictAfterBuild(ctx context.Context, keep string) {
	if c.max < 0 {
		return
	}
	log := c.Log
	if log == nil {
		log = os.Stderr
	}
	r, err := c.prune(ctx, c.max, keep, false, nil)
	if r != nil {
		for _, e := range r.Removed {
			fmt.Fprintf(log, "cache: evicted %s (%s, last used %s) to stay under the bound %s\n",
				e.Key, FormatSize(e.Size), e.LastUse.Format(time.DateTime), c.Bound())
		}
		if over := r.Over(); over > 0 && err == nil {
			fmt.Fprintf(log, "cache: %s is %s over the bound %s: the rest is in use or just built (l45 cache list shows it)\n",
				c.root, FormatSize(over), c.Bound())
		}
	}
	if err != nil {
		fmt.Fprintf(log, "cache: evicting after building %s: %v\n", keep, err)
	}
}

func (c *Cache) prune(ctx context.Context, max int64, keep string, debris bool, progress io.Writer) (*PruneResult, error) {
	res := &PruneResult{Max: max}
	pl, err := waitFlock(ctx, filepath.Join(c.root, ".prune.mutex"), unix.LOCK_EX, "another process pruning "+c.root)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	defer unlockFile(pl)
	// Trash is only ever written under .prune.mutex: what is left was
	// abandoned by an evictor that died.
	n, err := c.removeTrash(progress)
	res.Debris += n
	if err != nil {
		return res, err
	}
	entries, err := c.scan(ctx, progress)
	if err != nil {
		return res, err
	}
	for _, e := range entries {
		res.Total += e.Size
	}
	for _, e := range entries {
		if max < 0 || res.Total <= max {
			break
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if e.Key == keep || c.holds(e.Key) {
			res.InUse = append(res.InUse, e)
			continue
		}
		ok, err := c.evict(e, progress)
		if err != nil {
			return res, err
		}
		if !ok {
			res.InUse = append(res.InUse, e)
			continue
		}
		res.Removed = append(res.Removed, e)
		res.Freed += e.Size
		res.Total -= e.Size
	}
	if debris {
		n, err := c.removeDebris(progress)
		res.Debris += n
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// trashSeq makes trash names unique within a process.
var trashSeq atomic.Int64

// evict removes the entry unless it is in use (false, nil).
func (c *Cache) evict(e Entry, progress io.Writer) (bool, error) {
	b, err := tryFlock(c.lockPath(e.Key), unix.LOCK_EX, true)
	if errors.Is(err, errBusy) {
		return false, nil // being built, or its builder is about to claim it
	}
	if err != nil {
		return false, fmt.Errorf("cache: evict %s: %w", e.Key, err)
	}
	defer unlockFile(b)
	u, err := tryFlock(c.usePath(e.Key), unix.LOCK_EX, true)
	if errors.Is(err, errBusy) {
		return false, nil // some process was handed it and is still running
	}
	if err != nil {
		return false, fmt.Errorf("cache: evict %s: %w", e.Key, err)
	}
	defer unlockFile(u)
	trash := filepath.Join(c.root, fmt.Sprintf(".trash-%s-%d-%d", e.Key, os.Getpid(), trashSeq.Add(1)))
	if err := os.Rename(e.Dir, trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("cache: evict %s: %w (is the cache owned by another user?)", e.Key, err)
	}
	// From here on Get sees no entry and rebuilds it; whoever waits on the
	// old lock files notices they were unlinked (tryFlock) and reopens.
	os.Remove(c.usePath(e.Key))
	os.Remove(c.lockPath(e.Key))
	say(progress, "removing %s (%s, last used %s)\n", e.Key, FormatSize(e.Size), e.LastUse.Format(time.DateTime))
	if err := os.RemoveAll(trash); err != nil {
		return true, fmt.Errorf("cache: remove %s: %w", trash, err)
	}
	return true, nil
}

// inUse reports whether some process holds the entry's use or build lock.
// It never creates lock files, so it changes no last use.
func (c *Cache) inUse(key string) bool {
	if c.holds(key) {
		return true
	}
	for _, p := range []string{c.usePath(key), c.lockPath(key)} {
		f, err := tryFlock(p, unix.LOCK_EX, false)
		if errors.Is(err, errBusy) {
			return true
		}
		if err == nil {
			unlockFile(f)
		}
	}
	return false
}

// scan returns the complete entries, least recently used first.
func (c *Cache) scan(ctx context.Context, progress io.Writer) ([]Entry, error) {
	des, err := os.ReadDir(c.root)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var entries []Entry
	for _, de := range des {
		name := de.Name()
		if !de.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		dir := filepath.Join(c.root, name)
		built, size, ok := readMarker(dir)
		if !ok {
			continue // being removed, or debris of a killed build
		}
		e := Entry{Key: name, Kind: kindOf(name), Dir: dir, Size: size, LastUse: built}
		if fi, err := os.Stat(c.usePath(name)); err == nil {
			e.LastUse = fi.ModTime()
		}
		if size < 0 {
			// Built before sizes were recorded: measure it (entries are
			// never written after they are complete, so not into it).
			say(progress, "measuring %s...\n", name)
			n, err := diskUsage(ctx, dir)
			if errors.Is(err, fs.ErrNotExist) {
				continue // evicted meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("cache: measure %s: %w", name, err)
			}
			e.Size = n
		}
		entries = append(entries, e)
	}
	sort.SliceStable(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if !a.LastUse.Equal(b.LastUse) {
			return a.LastUse.Before(b.LastUse)
		}
		return a.Key < b.Key
	})
	return entries, nil
}

// readMarker reads the completion marker: the entry's build time (the
// marker's mtime) and its recorded size (-1 if the marker predates sizes).
func readMarker(dir string) (built time.Time, size int64, ok bool) {
	f, err := os.Open(filepath.Join(dir, completeMarker))
	if err != nil {
		return time.Time{}, 0, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, 0, false
	}
	size = -1
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, found := strings.CutPrefix(s.Text(), "size "); found {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				size = n
			}
		}
	}
	return fi.ModTime(), size, true
}

// diskUsage is the space the tree takes on disk (allocated blocks, each
// hard-linked file once), as du counts it.
func diskUsage(ctx context.Context, root string) (int64, error) {
	var total int64
	seen := map[[2]uint64]bool{}
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		if st.Nlink > 1 && !d.IsDir() {
			id := [2]uint64{uint64(st.Dev), st.Ino}
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}

// removeTrash deletes trees evictors renamed away and did not finish
// deleting. The caller holds .prune.mutex.
func (c *Cache) removeTrash(progress io.Writer) (int, error) {
	trash, _ := filepath.Glob(filepath.Join(c.root, ".trash-*"))
	for _, t := range trash {
		say(progress, "removing %s, left by an interrupted eviction\n", filepath.Base(t))
		if err := os.RemoveAll(t); err != nil {
			return 0, fmt.Errorf("cache: remove %s: %w", t, err)
		}
	}
	return len(trash), nil
}

// removeDebris deletes what killed builds left: temporary build directories
// and incomplete entries nobody is building, and lock files of entries that
// no longer exist. It only touches names the cache makes, under their
// build lock: other files in the root (.boot.lock, ...) are not its own.
func (c *Cache) removeDebris(progress io.Writer) (int, error) {
	des, err := os.ReadDir(c.root)
	if err != nil {
		return 0, fmt.Errorf("cache: %w", err)
	}
	removed := 0
	for _, de := range des {
		name := de.Name()
		path := filepath.Join(c.root, name)
		var key string
		switch {
		case de.IsDir() && strings.HasPrefix(name, ".build-"):
			// .build-KEY-RANDOM, from os.MkdirTemp.
			rest := strings.TrimPrefix(name, ".build-")
			if i := strings.LastIndex(rest, "-"); i > 0 {
				key = rest[:i]
			}
		case de.IsDir() && !strings.HasPrefix(name, "."):
			if complete(path) {
				continue
			}
			key = name
		case !de.IsDir() && (strings.HasSuffix(name, ".lock") || strings.HasSuffix(name, ".use")):
			k := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(name, "."), ".lock"), ".use")
			if !strings.HasPrefix(name, ".") || !keyShape.MatchString(k) {
				continue
			}
			if _, err := os.Stat(filepath.Join(c.root, k)); err == nil {
				continue // its entry exists
			}
			key = k
		}
		if key == "" {
			continue
		}
		ok, err := c.removeUnderBuildLock(key, path, progress)
		if err != nil {
			return removed, err
		}
		if ok {
			removed++
		}
	}
	return removed, nil
}

// removeUnderBuildLock removes path if key's build lock is free (nobody is
// building key) and path is still debris once the lock is held.
func (c *Cache) removeUnderBuildLock(key, path string, progress io.Writer) (bool, error) {
	lockPath := c.lockPath(key)
	b, err := tryFlock(lockPath, unix.LOCK_EX, false)
	switch {
	case errors.Is(err, errBusy):
		return false, nil
	case errors.Is(err, fs.ErrNotExist):
		// No lock file: no builder (a builder holds it from the start).
	case err != nil:
		return false, fmt.Errorf("cache: lock %s: %w", key, err)
	default:
		defer unlockFile(b)
	}
	entry := filepath.Join(c.root, key)
	switch {
	case path == c.usePath(key):
		u, err := tryFlock(path, unix.LOCK_EX, false)
		if err != nil {
			return false, nil // in use, or gone
		}
		defer unlockFile(u)
		if _, err := os.Stat(entry); err == nil {
			return false, nil // built meanwhile
		}
	case path == lockPath:
		if b == nil {
			return false, nil // gone meanwhile
		}
		if _, err := os.Stat(entry); err == nil {
			return false, nil
		}
	case path == entry:
		if complete(entry) {
			return false, nil
		}
	}
	say(progress, "removing %s, left by an interrupted build\n", filepath.Base(path))
	if err := os.RemoveAll(path); err != nil {
		return false, fmt.Errorf("cache: remove %s: %w", path, err)
	}
	return true, nil
}

func say(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}
