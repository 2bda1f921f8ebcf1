// Package repo finds this repository's files from wherever a test or the
// l45 command runs: the Layer 4.5 tree (kernel/) and the guest programs'
// sources (vmimages/) are built from it.
package repo

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// Root finds the repository's top directory (where go.mod is) from the
// working directory, which go test sets to a package inside it.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module layer45\n")) {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("cannot find the layer45 repository above %s: run from inside it", dir)
		}
	}
}

// KernelTree is the project's own Layer 4.5 tree.
func KernelTree() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "kernel"), nil
}
