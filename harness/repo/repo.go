// Package repo finds this repository's files from wherever a test or the
// l45 command runs: the Layer 4.5 tree (kernel/) and the guest programs'
// sources (vmimages/) are built from it.
package repo

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Root finds the repository's top directory (where go.mod is) from the
// working directory, which go test sets to a package inside it; else it is
// the checkout this program was built from, so that l45 also works when
// run elsewhere (git bisect run in a Layer 4.5 repository).
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if root, ok := moduleAbove(dir); ok {
		return root, nil
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if root, ok := moduleAbove(filepath.Dir(file)); ok {
			return root, nil
		}
	}
	return "", fmt.Errorf("cannot find the layer45 repository above %s: run from inside it", dir)
}

// moduleAbove finds the layer45 module's top directory at or above dir.
func moduleAbove(dir string) (string, bool) {
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module layer45\n")) {
			return d, true
		}
		if d == filepath.Dir(d) {
			return "", false
		}
	}
}

// KernelTree is the Layer 4.5 tree under test: $L45_TREE when set (a
// developer's working copy, a copy of kernel/ with a deliberate fault, or
// another implementation of the interface whose layout its settings
// describe: see SettingsFile), else the project's own kernel/. The tree
// is checked (LoadTree), so that settings it cannot be built with are
// told before anything boots.
func KernelTree() (string, error) {
	dir := os.Getenv("L45_TREE")
	if dir == "" {
		root, err := Root()
		if err != nil {
			return "", err
		}
		own := filepath.Join(root, "kernel")
		return own, CheckTree(own)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("L45_TREE=%s: %w", dir, err)
	}
	return abs, CheckTree(abs)
}

// CheckTree says what a Layer 4.5 tree lacks, or which of its settings
// cannot be used, if anything.
func CheckTree(dir string) error {
	_, err := LoadTree(dir)
	return err
}

// UserModules is $L45_MODULES made absolute: a folder of the user's own
// customization modules, as Kbuild sources or prebuilt .ko files
// (harness/modules tells which); "" when unset.
func UserModules() (string, error) {
	dir := os.Getenv("L45_MODULES")
	if dir == "" {
		return "", nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("L45_MODULES=%s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("L45_MODULES=%s: want a folder of customization module sources (with a Kbuild or Makefile) or of prebuilt .ko files", dir)
	}
	return abs, nil
}
