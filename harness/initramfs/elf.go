package initramfs

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// libraryDirs is where the dynamic loader of a Debian amd64 system looks for
// libraries, in its order.
var libraryDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// sharedLibraries returns the host paths of the program interpreter and every
// library prog needs, transitively, computed from the ELF files themselves
// (PT_INTERP, DT_NEEDED, DT_RUNPATH/DT_RPATH).
func sharedLibraries(prog string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var visit func(path string) error
	visit = func(path string) error {
		f, err := elf.Open(path)
		if err != nil {
			return fmt.Errorf("read ELF %s: %w", path, err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return fmt.Errorf("%s: read interpreter: %w", path, err)
			}
			interp := strings.TrimRight(string(b), "\x00")
			if !seen[interp] {
				seen[interp] = true
				out = append(out, interp)
			}
		}
		needed, err := f.DynString(elf.DT_NEEDED)
		if err != nil {
			return nil // static binary: no dynamic section
		}
		var search []string
		for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
			paths, _ := f.DynString(tag)
			for _, p := range paths {
				for _, d := range strings.Split(p, ":") {
					search = append(search, strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(path)))
				}
			}
		}
		search = append(search, libraryDirs...)
		for _, lib := range needed {
			found := ""
			for _, d := range search {
				cand := filepath.Join(d, lib)
				if _, err := os.Stat(cand); err == nil {
					found = cand
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, which is not installed in %s", path, lib, strings.Join(search, ", "))
			}
			if seen[found] {
				continue
			}
			seen[found] = true
			out = append(out, found)
			if err := visit(found); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(prog); err != nil {
		return nil, err
	}
	return out, nil
}
