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
	"strings"
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
// developer's working copy, or a copy of kernel/ with a deliberate fault),
// else the project's own kernel/. A tree must have the project's layout:
// the core in layer4_5/, the module header in include/layer4_5/, the test
// modules in customizations/.
func KernelTree() (string, error) {
	dir := os.Getenv("L45_TREE")
	if dir == "" {
		root, err := Root()
		if err != nil {
			return "", err
		}
		return filepath.Join(root, "kernel"), nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("L45_TREE=%s: %w", dir, err)
	}
	return abs, CheckTree(abs)
}

// treeFiles are what a Layer 4.5 tree must hold to be built for a guest.
var treeFiles = []string{"Makefile", "layer4_5/Kbuild", "include/layer4_5/customization.h", "customizations/Kbuild"}

// CheckTree says what a Layer 4.5 tree lacks, if anything.
func CheckTree(dir string) error {
	var missing []string
	for _, f := range treeFiles {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("L45_TREE=%s is not a Layer 4.5 tree: it lacks %s (point it at a folder laid out like kernel/)", dir, strings.Join(missing, ", "))
	}
	return nil
}
