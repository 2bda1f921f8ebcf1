// Package modules builds Layer 4.5 and the customization modules (the
// repository's kernel/ folder) for a guest's exact kernel, cached by the
// content of the sources and the identity of the kernel.
package modules

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"layer45/harness/cache"
	"layer45/harness/kernels"
)

// CoreName is Layer 4.5's own module.
const CoreName = "layer4_5"

// Set is a build's modules.
type Set struct {
	// Dir is the build's cache entry.
	Dir string
	// KOs maps module name (file name without .ko) to its file.
	KOs map[string]string
	// Log is the build's output (compiler warnings included).
	Log string
}

// Path returns the .ko of the named module or an error naming the ones built.
func (s *Set) Path(name string) (string, error) {
	if p, ok := s.KOs[name]; ok {
		return p, nil
	}
	var names []string
	for n := range s.KOs {
		names = append(names, n)
	}
	sort.Strings(names)
	return "", fmt.Errorf("module %s was not built (built: %s)", name, strings.Join(names, " "))
}

// isSource says which files of kernel/ go into a build; build products a
// developer left in the tree do not.
func isSource(name string) bool {
	switch name {
	case "Makefile", "Kbuild", "Kconfig":
		return true
	}
	switch filepath.Ext(name) {
	case ".c", ".h", ".sh", ".config", ".lds":
		return true
	}
	return false
}

func sourceFiles(root string) ([]string, error) {
	var files []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() && isSource(fi.Name()) {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// Build compiles the kernel/ tree at src against k, or returns the cached
// build. A compile failure is an error carrying the compiler's output.
func Build(ctx context.Context, c *cache.Cache, k *kernels.Kernel, src string) (*Set, error) {
	files, err := sourceFiles(src)
	if err != nil {
		return nil, fmt.Errorf("Layer 4.5 sources: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Layer 4.5 sources in %s", src)
	}
	var abs []string
	for _, f := range files {
		abs = append(abs, filepath.Join(src, f))
	}
	srcHash, err := cache.HashFiles(abs...)
	if err != nil {
		return nil, err
	}
	key := cache.Key("modules-"+k.Release, srcHash, k.String(), compilerVersion())
	dir, err := c.Get(ctx, key, func(ctx context.Context, dir string) error {
		return build(ctx, dir, k, src, files)
	})
	if err != nil {
		return nil, err
	}
	return collect(dir)
}

func compilerVersion() string {
	out, _ := exec.Command("gcc", "--version").Output()
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

func build(ctx context.Context, dir string, k *kernels.Kernel, src string, files []string) error {
	tree := filepath.Join(dir, "kernel")
	for _, f := range files {
		if err := copyFile(filepath.Join(src, f), filepath.Join(tree, f)); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, "make", "-C", tree, "KDIR="+k.BuildDir, fmt.Sprintf("-j%d", runtime.NumCPU()))
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	os.WriteFile(filepath.Join(dir, "build.log"), out.Bytes(), 0o644)
	if err != nil {
		return fmt.Errorf("Layer 4.5 modules failed to compile against kernel %s: %w\n%s", k.Release, err, tail(out.String(), 40))
	}
	return nil
}

func collect(dir string) (*Set, error) {
	s := &Set{Dir: dir, KOs: map[string]string{}}
	log, _ := os.ReadFile(filepath.Join(dir, "build.log"))
	s.Log = string(log)
	err := filepath.Walk(filepath.Join(dir, "kernel"), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".ko") {
			name := strings.TrimSuffix(fi.Name(), ".ko")
			if prev, dup := s.KOs[name]; dup {
				return fmt.Errorf("two modules named %s: %s and %s", name, prev, p)
			}
			s.KOs[name] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("Layer 4.5 build in %s: %w", dir, err)
	}
	if len(s.KOs) == 0 {
		return nil, fmt.Errorf("Layer 4.5 build in %s produced no modules (see build.log)", dir)
	}
	return s, nil
}

func copyFile(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
