package initramfs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// moduleIndex is a kernel's modules.dep: module name to its file and the
// files it depends on.
type moduleIndex struct {
	dir  string              // lib/modules/<release>
	deps map[string][]string // relative file -> relative files it needs
	file map[string]string   // module name -> relative file
	// builtin names modules compiled into the kernel: asking for one is
	// not an error, there is just nothing to load.
	builtin map[string]bool
}

// moduleName is how the kernel names a module file: the base name without
// .ko (and compression suffix), dashes as underscores.
func moduleName(file string) string {
	b := filepath.Base(file)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

func readModuleIndex(modulesDir string) (*moduleIndex, error) {
	f, err := os.Open(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules index: %w (the kernel cache entry may be damaged)", err)
	}
	defer f.Close()
	idx := &moduleIndex{dir: modulesDir, deps: map[string][]string{}, file: map[string]string{}}
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		mod, deps, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		idx.deps[mod] = strings.Fields(deps)
		idx.file[moduleName(mod)] = mod
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	idx.builtin = map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modulesDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			idx.builtin[moduleName(l)] = true
		}
	}
	return idx, nil
}

// loadOrder returns the files of the named modules and everything they
// depend on, each after its dependencies, each once.
func (idx *moduleIndex) loadOrder(names ...string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(file string) error
	visit = func(file string) error {
		switch state[file] {
		case 1:
			return fmt.Errorf("kernel modules: dependency cycle at %s", file)
		case 2:
			return nil
		}
		state[file] = 1
		for _, d := range idx.deps[file] {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[file] = 2
		order = append(order, file)
		return nil
	}
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		file, ok := idx.file[n]
		if !ok && idx.builtin[n] {
			continue
		}
		if !ok {
			return nil, fmt.Errorf("kernel module %s is not in %s/modules.dep", n, idx.dir)
		}
		if err := visit(file); err != nil {
			return nil, err
		}
	}
	return order, nil
}
