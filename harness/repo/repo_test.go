package repo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKernelTree(t *testing.T) {
	t.Setenv("L45_TREE", "")
	own, err := KernelTree()
	if err != nil || filepath.Base(own) != "kernel" {
		t.Fatalf("default tree = %q, %v; want the repository's kernel/", own, err)
	}
	if err := CheckTree(own); err != nil {
		t.Fatalf("the project's own tree fails its check: %v", err)
	}

	copyDir := t.TempDir()
	for _, f := range treeFiles {
		p := filepath.Join(copyDir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("L45_TREE", copyDir)
	if got, err := KernelTree(); err != nil || got != copyDir {
		t.Fatalf("L45_TREE tree = %q, %v", got, err)
	}

	os.Remove(filepath.Join(copyDir, "include/layer4_5/customization.h"))
	_, err = KernelTree()
	if err == nil || !strings.Contains(err.Error(), "lacks include/layer4_5/customization.h") {
		t.Fatalf("a tree without the header: %v", err)
	}
}

// Run from outside any checkout (git bisect run in a Layer 4.5
// repository), the repository is the one this code was built from.
func TestRootFromElsewhereIsTheCheckoutBuiltFrom(t *testing.T) {
	here, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	if got, err := Root(); err != nil || got != here {
		t.Fatalf("Root from a temporary folder = %q, %v; want %q", got, err, here)
	}
}
