// Package cache is the harness's content-addressed store for things that are
// expensive to make: unpacked kernels, built modules, guest images.
//
// An entry is a directory named by a key that covers everything affecting its
// content. It is built in a private temporary directory and renamed into
// place, so a reader never sees a half-built entry; a lock file serialises
// builders of the same key across test processes (go test runs packages in
// parallel, each in its own process).
//
// The cache is bounded (see evict.go): each entry has a use lock, held shared
// by every process that was handed the entry until it ends, whose mtime is
// the entry's last use. Eviction removes least recently used entries whose
// locks it can take exclusively, so an entry in use is never removed.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// completeMarker is written last into an entry; an entry without it is debris
// from a build that died and is rebuilt.
const completeMarker = ".complete"

// Cache is a directory of entries.
type Cache struct {
	root string
	max  int64  // bound in bytes, Unlimited for none
	from string // where max came from, for messages

	// Log receives a line for each entry Get evicts to stay under the
	// bound; nil means standard error.
	Log io.Writer

	mu   sync.Mutex
	held map[string]*os.File // use locks of the entries handed out
}

// Open returns the cache rooted at dir, creating it if needed. Its bound comes
// from $L45_CACHE_MAX (see ParseMax); an invalid value is an error.
func Open(dir string) (*Cache, error) {
	max, from, err := maxFromEnv()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: create %s: %w (set L45_CACHE to a writable directory)", dir, err)
	}
	return &Cache{root: dir, max: max, from: from, held: map[string]*os.File{}}, nil
}

// Default opens the cache named by $L45_CACHE, else $XDG_CACHE_HOME/layer45,
// else ~/.cache/layer45.
func Default() (*Cache, error) {
	return Open(DefaultDir())
}

// DefaultDir is the directory Default opens.
func DefaultDir() string {
	if d := os.Getenv("L45_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "layer45")
	}
	return filepath.Join(os.TempDir(), "layer45-cache")
}

// Root is the cache's directory.
func (c *Cache) Root() string { return c.root }

// Key hashes parts into a short stable key; kind names the entry's family
// and leads the key so the cache stays readable by a person.
func Key(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return kind + "-" + hex.EncodeToString(h.Sum(nil))[:20]
}

// BuildFunc fills dir with an entry's content.
type BuildFunc func(ctx context.Context, dir string) error

// Get returns the directory of the entry key, building it with build if it is
// missing. Concurrent callers (threads or processes) build it once.
//
// The entry stays claimed by this Cache (it is never evicted) until Release or
// the end of the process, and its last use is now. After building a new
// entry, Get evicts least recently used entries to stay under the bound.
func (c *Cache) Get(ctx context.Context, key string, build BuildFunc) (string, error) {
	if strings.ContainsAny(key, "/\\") || key == "" || key[0] == '.' {
		return "", fmt.Errorf("cache: invalid key %q", key)
	}
	dir := filepath.Join(c.root, key)
	if complete(dir) {
		ok, err := c.claim(ctx, key)
		if err != nil {
			return "", err
		}
		if ok {
			return dir, nil
		}
		// Evicted while we waited for its use lock: build it again.
	}
	built, err := c.getOrBuild(ctx, key, build)
	if err != nil {
		return "", err
	}
	if built {
		c.evictAfterBuild(ctx, key)
	}
	return dir, nil
}

// getOrBuild builds the entry under its build lock unless another caller did,
// and claims it before letting go of the build lock, so that no evictor
// (which needs the build lock too) can come in between.
func (c *Cache) getOrBuild(ctx context.Context, key string, build BuildFunc) (built bool, err error) {
	dir := filepath.Join(c.root, key)
	unlock, err := c.lock(ctx, key)
	if err != nil {
		return false, err
	}
	defer unlock()
	if !complete(dir) {
		if err := c.build(ctx, key, build); err != nil {
			return false, err
		}
		built = true
	}
	ok, err := c.claim(ctx, key)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("cache: entry %s vanished while its build lock was held (was %s changed by hand?)", key, c.root)
	}
	return built, nil
}

// build makes the entry in a temporary directory and renames it into place.
// The caller holds the build lock.
func (c *Cache) build(ctx context.Context, key string, build BuildFunc) error {
	dir := filepath.Join(c.root, key)
	if _, err := os.Stat(dir); err == nil {
		// Debris of an interrupted build: it is safe to remove because we
		// hold the lock and the entry never became complete.
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("cache: remove incomplete entry %s: %w", dir, err)
		}
	}
	tmp, err := os.MkdirTemp(c.root, ".build-"+key+"-")
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if err := build(ctx, tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	// The size is measured once, here: entries do not change once complete,
	// and eviction should not have to walk multi-GB trees after every build.
	size, err := diskUsage(ctx, tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("cache: measure %s: %w", key, err)
	}
	marker := fmt.Sprintf("%s\nsize %d\n", time.Now().UTC().Format(time.RFC3339), size)
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), []byte(marker), 0o644); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("cache: publish %s: %w", key, err)
	}
	return nil
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, completeMarker))
	return err == nil
}

func (c *Cache) lockPath(key string) string { return filepath.Join(c.root, "."+key+".lock") }
func (c *Cache) usePath(key string) string  { return filepath.Join(c.root, "."+key+".use") }

// lock takes the key's build lock: an exclusive flock on .KEY.lock, polling
// so that ctx can end the wait.
func (c *Cache) lock(ctx context.Context, key string) (func(), error) {
	f, err := waitFlock(ctx, c.lockPath(key), unix.LOCK_EX, "another process building "+key)
	if err != nil {
		return nil, fmt.Errorf("cache: lock %s: %w", key, err)
	}
	return func() { unlockFile(f) }, nil
}

// claim marks the complete entry key as used by this Cache: a shared flock on
// .KEY.use, kept until Release, and the file's mtime set to now (the entry's
// last use, read by eviction in any process). It reports false if the entry
// was evicted while it waited.
func (c *Cache) claim(ctx context.Context, key string) (bool, error) {
	dir := filepath.Join(c.root, key)
	c.mu.Lock()
	f := c.held[key]
	c.mu.Unlock()
	if f != nil {
		touch(f)
		return complete(dir), nil
	}
	f, err := waitFlock(ctx, c.usePath(key), unix.LOCK_SH, "l45 cache (prune, clean or list) holding "+key)
	if isNoAccess(err) {
		// A cache this user may read but not write: nobody can evict
		// from it as this user either; use the entry unclaimed.
		return complete(dir), nil
	}
	if err != nil {
		return false, fmt.Errorf("cache: claim %s: %w", key, err)
	}
	if !complete(dir) {
		unlockFile(f)
		return false, nil
	}
	touch(f)
	c.mu.Lock()
	if c.held[key] == nil {
		c.held[key] = f
		f = nil
	}
	c.mu.Unlock()
	if f != nil { // another goroutine claimed it meanwhile; its lock suffices
		unlockFile(f)
	}
	return true, nil
}

// Release gives up this Cache's claims on the entries it handed out, making
// them evictable. Directories it returned must not be used afterwards unless
// Get returns them again. A process that ends releases them all anyway.
func (c *Cache) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, f := range c.held {
		unlockFile(f)
		delete(c.held, k)
	}
}

func (c *Cache) holds(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held[key] != nil
}

// touch sets the file's mtime to now. Setting it to now (rather than to a
// given time) needs only write access, not ownership, so processes of
// different users sharing a cache can all record their use.
func touch(f *os.File) {
	unix.Futimes(int(f.Fd()), nil)
}

var errBusy = errors.New("lock held by another process")

// tryFlock opens path (creating it if create) and takes the flock how
// (LOCK_SH or LOCK_EX) without waiting: errBusy if another holder conflicts.
// It makes sure the file locked is still the one at path: an evictor unlinks
// lock files of the entries it removes, and whoever opened the old file
// before that must not believe it holds the lock.
func tryFlock(path string, how int, create bool) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		flags := os.O_RDWR
		if create {
			flags |= os.O_CREATE
		}
		f, err := os.OpenFile(path, flags, 0o644)
		if isNoAccess(err) {
			f, err = os.Open(path) // flock needs no write access
		}
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, errBusy
			}
			return nil, err
		}
		if samePath(f, path) {
			return f, nil
		}
		f.Close() // releases the lock on the unlinked file
		if attempt == 100 {
			return nil, fmt.Errorf("%s keeps being replaced", path)
		}
	}
}

// waitFlock is tryFlock (creating the file) polling until it gets the lock or
// ctx ends; holder names who is waited for in the error.
func waitFlock(ctx context.Context, path string, how int, holder string) (*os.File, error) {
	for {
		f, err := tryFlock(path, how, true)
		if !errors.Is(err, errBusy) {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", holder, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func unlockFile(f *os.File) {
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	f.Close()
}

func samePath(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

func isNoAccess(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS)
}

// HashFiles hashes the named files and directory trees (paths, modes and
// contents, in a stable order) so a change to any of them changes the key.
func HashFiles(paths ...string) (string, error) {
	h := sha256.New()
	for _, root := range paths {
		err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			fmt.Fprintf(h, "%s %s %o\n", filepath.Base(root), rel, fi.Mode())
			switch {
			case fi.Mode().IsRegular():
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = io.Copy(h, f)
				return err
			case fi.Mode()&os.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				fmt.Fprintf(h, "-> %s\n", target)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", root, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
