// Package kernels provides the kernels guests boot. Every source of kernels
// (Debian's prebuilt packages, debian:SUITE; builds of Debian's
// linux-source-SERIES with Layer 4.5 built in, source:SERIES[:debug]) is a
// Provider, and every kernel it yields is described the same way, so the
// rest of the harness never cares where a kernel came from.
package kernels

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"layer45/harness/cache"
)

// Package is one distribution package a kernel was made from, recorded so a
// report says exactly what ran.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Kernel is a bootable kernel with what is needed to build modules for it.
type Kernel struct {
	// Release is what `uname -r` prints in the guest.
	Release string `json:"release"`
	// Image is the bzImage QEMU boots with -kernel.
	Image string `json:"image"`
	// ModulesDir is lib/modules/<Release> with modules.dep.
	ModulesDir string `json:"modules_dir"`
	// BuildDir is the kbuild directory out-of-tree modules are built against
	// (make -C BuildDir M=...).
	BuildDir string `json:"build_dir"`
	// Layer45Builtin says Layer 4.5 is compiled into the kernel, so the guest
	// must not load layer4_5.ko.
	Layer45Builtin bool `json:"layer45_builtin"`
	// Provider names where it came from; Packages what it was made of.
	Provider string    `json:"provider"`
	Packages []Package `json:"packages,omitempty"`
	// Toolchain is how modules for this kernel are compiled. The provider
	// sets it each time it hands out the kernel (a build root is a cache
	// entry of its own, refreshed apart from the kernel's).
	Toolchain *Toolchain `json:"-"`
}

// String is a one-line description for logs and reports.
func (k *Kernel) String() string {
	var pk []string
	for _, p := range k.Packages {
		pk = append(pk, p.Name+"="+p.Version)
	}
	s := k.Provider + " " + k.Release
	if len(pk) > 0 {
		s += " (" + strings.Join(pk, ", ") + ")"
	}
	return s
}

// Config reads the kernel's configuration from its build directory: each
// option set (CONFIG_...) with its value ("y", "m", a number or a quoted
// string). Options that are not set are absent.
func (k *Kernel) Config() (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(k.BuildDir, ".config"))
	if err != nil {
		return nil, fmt.Errorf("the configuration of kernel %s: %w", k.Release, err)
	}
	conf := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if name, value, ok := strings.Cut(l, "="); ok && strings.HasPrefix(name, "CONFIG_") {
			conf[name] = value
		}
	}
	return conf, nil
}

// Provider yields a kernel, fetching or building it into the cache if needed.
type Provider interface {
	// Name identifies the provider and its parameters, e.g. "debian:bookworm".
	Name() string
	// Kernel returns the kernel, making it if it is not cached yet. Progress
	// of long steps (downloads, builds) goes to progress.
	Kernel(ctx context.Context, progress io.Writer) (*Kernel, error)
}

const manifestName = "kernel.json"

// writeManifest records k in the cache entry dir. Paths are stored relative
// to dir because an entry is built elsewhere and renamed into place.
func writeManifest(dir string, k *Kernel) error {
	rel := *k
	for _, p := range []*string{&rel.Image, &rel.ModulesDir, &rel.BuildDir} {
		if *p == "" {
			continue
		}
		r, err := filepath.Rel(dir, *p)
		if err != nil {
			return err
		}
		*p = r
	}
	b, err := json.MarshalIndent(&rel, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, manifestName), append(b, '\n'), 0o644)
}

// cachedKernel is the kernel cached under key, made by build when missing,
// as its manifest describes it; name is the provider's, for errors.
func cachedKernel(ctx context.Context, c *cache.Cache, name, key string, build cache.BuildFunc) (*Kernel, error) {
	dir, err := c.Get(ctx, key, build)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", name, err)
	}
	return readManifest(dir)
}

// readManifest loads a cached kernel's description and checks that the files
// it names are there, so a damaged cache is reported, not booted.
func readManifest(dir string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, fmt.Errorf("kernel cache entry %s is damaged (%w): remove it and run again", dir, err)
	}
	var k Kernel
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("kernel cache entry %s has a corrupt %s (%v): remove the directory and run again", dir, manifestName, err)
	}
	for _, p := range []*string{&k.Image, &k.ModulesDir, &k.BuildDir} {
		if *p == "" {
			continue
		}
		*p = filepath.Join(dir, *p)
		if _, err := os.Stat(*p); err != nil {
			return nil, fmt.Errorf("kernel cache entry %s is incomplete (%v): remove the directory and run again", dir, err)
		}
	}
	return &k, nil
}

// Parse turns a kernel spec (as given in $L45_KERNEL or on a command line)
// into a provider that keeps what it makes in c. An empty spec is the
// default kernel. layer45 is the repository's kernel/ folder, which
// source-built kernels compile in.
//
//	debian[:SUITE[:SERIES]]   Debian's prebuilt kernel (default debian:bookworm);
//	                          SERIES picks one of the suite's kernel series
//	                          (debian:bookworm:6.12) or insists on it
//	source:SERIES[:debug]     linux-source-SERIES with Layer 4.5 built in
//	dir:PATH                  a kernel unpacked in PATH with its kernel.json
//	                          (a repro bundle's; see Pack)
//	path:IMAGE?modules=DIR[&build=DIR]
//	                          a kernel the user built (see Path)
func Parse(spec string, c *cache.Cache, layer45 string) (Provider, error) {
	if p, ok := strings.CutPrefix(spec, "dir:"); ok && p != "" {
		return &Dir{Path: p}, nil
	}
	if strings.HasPrefix(spec, "path:") {
		return parsePath(spec, c)
	}
	parts := strings.Split(spec, ":")
	switch {
	case parts[0] == "" && len(parts) == 1 || parts[0] == "debian":
		suite := DefaultDebianSuite
		if len(parts) > 1 && parts[1] != "" {
			suite = parts[1]
		}
		if !suiteName.MatchString(suite) {
			break
		}
		if len(parts) <= 2 {
			return &Debian{Suite: suite, Cache: c}, nil
		}
		if len(parts) == 3 && seriesName.MatchString(parts[2]) {
			return &Debian{Suite: suite, Series: parts[2], Cache: c}, nil
		}
	case parts[0] == "source" && len(parts) >= 2 && parts[1] != "":
		if len(parts) == 2 {
			return &Source{Series: parts[1], Layer45: layer45, Cache: c}, nil
		}
		if len(parts) == 3 && parts[2] == "debug" {
			return &Source{Series: parts[1], Debug: true, Layer45: layer45, Cache: c}, nil
		}
	}
	return nil, fmt.Errorf("unknown kernel %q: use debian[:SUITE[:SERIES]], source:SERIES[:debug] or dir:PATH (the default is debian:%s)", spec, DefaultDebianSuite)
}

// seriesName is a kernel series: 5.10, 6.12, 7.2.
var seriesName = regexp.MustCompile(`^\d+\.\d+$`)
