// Package initramfs composes, on the host, the initramfs images guests
// boot: the guest agent (built from vmimages/agent) as /init, busybox, the
// real programs the suites drive (dig, dnsmasq) with the shared libraries
// they need, and the kernel modules the guest must load. An image is described first, then written as a cpio archive; its
// digest covers every byte, so images are cached by content.
package initramfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
)

type entry struct {
	kind   entryKind
	mode   os.FileMode
	data   []byte // file content given in memory
	source string // or a host file to copy
	target string // symlink target
}

// Image is the content of an initramfs, keyed by absolute guest path.
type Image struct {
	entries map[string]*entry
}

// New returns an empty image.
func New() *Image { return &Image{entries: map[string]*entry{}} }

func clean(p string) string { return path.Clean("/" + p) }

func (im *Image) addDirs(p string) {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := im.entries[d]; !ok {
			im.entries[d] = &entry{kind: kindDir, mode: 0o755}
		}
	}
}

// AddBytes puts data at guestPath.
func (im *Image) AddBytes(guestPath string, data []byte, mode os.FileMode) {
	p := clean(guestPath)
	im.addDirs(p)
	im.entries[p] = &entry{kind: kindFile, mode: mode, data: data}
}

// AddFile copies the host file src to guestPath.
func (im *Image) AddFile(guestPath, src string, mode os.FileMode) {
	p := clean(guestPath)
	im.addDirs(p)
	im.entries[p] = &entry{kind: kindFile, mode: mode, source: src}
}

// AddSymlink makes guestPath a symbolic link to target.
func (im *Image) AddSymlink(guestPath, target string) {
	p := clean(guestPath)
	im.addDirs(p)
	im.entries[p] = &entry{kind: kindSymlink, mode: 0o777, target: target}
}

// AddDir makes an empty directory.
func (im *Image) AddDir(guestPath string, mode os.FileMode) {
	p := clean(guestPath)
	im.addDirs(p)
	if _, ok := im.entries[p]; !ok {
		im.entries[p] = &entry{kind: kindDir, mode: mode}
	}
}

// Has reports whether guestPath is in the image.
func (im *Image) Has(guestPath string) bool {
	_, ok := im.entries[clean(guestPath)]
	return ok
}

// AddHostPath copies a host path into the image at the same path, following
// it the way the loader would: every symbolic link on the way (a merged /usr
// makes /lib one) is reproduced as a link and its target copied too.
func (im *Image) AddHostPath(hostPath string) error {
	return im.addHostPath(clean(hostPath), 0)
}

func (im *Image) addHostPath(p string, depth int) error {
	if depth > 40 {
		return fmt.Errorf("add %s: too many levels of symbolic links", p)
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, part := range parts {
		cur = path.Join(cur, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			return fmt.Errorf("add %s to the guest image: %w", p, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(cur)
			if err != nil {
				return err
			}
			im.AddSymlink(cur, target)
			resolved := target
			if !path.IsAbs(target) {
				resolved = path.Join(path.Dir(cur), target)
			}
			rest := path.Join(append([]string{resolved}, parts[i+1:]...)...)
			return im.addHostPath(clean(rest), depth+1)
		}
		if i == len(parts)-1 {
			if fi.IsDir() {
				im.AddDir(cur, fi.Mode().Perm())
				return nil
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("add %s to the guest image: not a regular file", cur)
			}
			if e, ok := im.entries[cur]; ok && e.kind == kindFile {
				return nil
			}
			im.AddFile(cur, cur, fi.Mode().Perm())
		}
	}
	return nil
}

// AddProgram copies a host program and every shared library it needs.
func (im *Image) AddProgram(hostPath string) error {
	if err := im.AddHostPath(hostPath); err != nil {
		return err
	}
	libs, err := sharedLibraries(hostPath)
	if err != nil {
		return fmt.Errorf("add program %s: %w", hostPath, err)
	}
	for _, l := range libs {
		if err := im.AddHostPath(l); err != nil {
			return err
		}
	}
	return nil
}

func (im *Image) sortedPaths() []string {
	paths := make([]string, 0, len(im.entries))
	for p := range im.entries {
		paths = append(paths, p)
	}
	// Sorting puts every directory before what it contains.
	sort.Strings(paths)
	return paths
}

func (e *entry) open() (io.ReadCloser, int64, error) {
	if e.source == "" {
		return io.NopCloser(bytes.NewReader(e.data)), int64(len(e.data)), nil
	}
	f, err := os.Open(e.source)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// Digest is a hash of every path, mode, link and byte of the image.
func (im *Image) Digest() (string, error) {
	h := sha256.New()
	for _, p := range im.sortedPaths() {
		e := im.entries[p]
		fmt.Fprintf(h, "%d %s %o %s\n", e.kind, p, e.mode, e.target)
		if e.kind != kindFile {
			continue
		}
		r, _, err := e.open()
		if err != nil {
			return "", fmt.Errorf("image digest: %w", err)
		}
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			return "", fmt.Errorf("image digest: %s: %w", p, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteCPIO writes the image as an uncompressed newc archive. Uncompressed
// because the guest unpacks it, and decompressing under TCG costs more than
// reading a larger file from the page cache.
func (im *Image) WriteCPIO(w io.Writer) error {
	cw := newCPIOWriter(w)
	for _, p := range im.sortedPaths() {
		e := im.entries[p]
		name := strings.TrimPrefix(p, "/")
		var err error
		switch e.kind {
		case kindDir:
			err = cw.entry(name, cpioModeDir|uint32(e.mode.Perm()), nil, 0)
		case kindSymlink:
			err = cw.entry(name, cpioModeSymlink|0o777, strings.NewReader(e.target), int64(len(e.target)))
		case kindFile:
			r, size, oerr := e.open()
			if oerr != nil {
				return fmt.Errorf("write image: %w", oerr)
			}
			err = cw.entry(name, cpioModeFile|uint32(e.mode.Perm()), r, size)
			r.Close()
		}
		if err != nil {
			return err
		}
	}
	return cw.close()
}

// WriteFile writes the archive to path atomically.
func (im *Image) WriteFile(dst string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".initramfs-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := im.WriteCPIO(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
