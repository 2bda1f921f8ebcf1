// Package cache is the harness's content-addressed store for things that are
// expensive to make: unpacked kernels, built modules, guest images.
//
// An entry is a directory named by a key that covers everything affecting its
// content. It is built in a private temporary directory and renamed into
// place, so a reader never sees a half-built entry; a lock file serialises
// builders of the same key across test processes (go test runs packages in
// parallel, each in its own process).
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// completeMarker is written last into an entry; an entry without it is debris
// from a build that died and is rebuilt.
const completeMarker = ".complete"

// Cache is a directory of entries.
type Cache struct {
	root string
}

// Open returns the cache rooted at dir, creating it if needed.
func Open(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: create %s: %w (set L45_CACHE to a writable directory)", dir, err)
	}
	return &Cache{root: dir}, nil
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
func (c *Cache) Get(ctx context.Context, key string, build BuildFunc) (string, error) {
	if strings.ContainsAny(key, "/\\") || key == "" || key[0] == '.' {
		return "", fmt.Errorf("cache: invalid key %q", key)
	}
	dir := filepath.Join(c.root, key)
	if complete(dir) {
		return dir, nil
	}
	unlock, err := c.lock(ctx, key)
	if err != nil {
		return "", err
	}
	defer unlock()
	if complete(dir) {
		return dir, nil
	}
	if _, err := os.Stat(dir); err == nil {
		// Debris of an interrupted build: it is safe to remove because we
		// hold the lock and the entry never became complete.
		if err := os.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("cache: remove incomplete entry %s: %w", dir, err)
		}
	}
	tmp, err := os.MkdirTemp(c.root, ".build-"+key+"-")
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := build(ctx, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("cache: publish %s: %w", key, err)
	}
	return dir, nil
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, completeMarker))
	return err == nil
}

// lock takes an exclusive flock on the key's lock file, polling so that ctx
// can end the wait.
func (c *Cache) lock(ctx context.Context, key string) (func(), error) {
	path := filepath.Join(c.root, "."+key+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache: lock %s: %w", key, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("cache: lock %s: %w", key, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("cache: waiting for another process building %s: %w", key, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
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
