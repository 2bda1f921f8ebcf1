package kernels

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"layer45/harness/cache"
)

// Path is a kernel the user built, given by paths (spec
// path:IMAGE?modules=DIR[&build=DIR]): a bzImage, its modules folder
// (lib/modules/RELEASE with modules.dep, as make modules_install leaves
// it) and the build tree or headers modules are built against (default:
// the modules folder's build link). The release is the bzImage's own
// (ImageRelease) and must be the modules folder's name.
//
// The cache entry holds a copy of the image, so what booted stays what
// was tested, and links to the two folders; its key includes the digests
// of the image, modules.dep, Module.symvers and .config, so a rebuilt
// kernel is a new entry and gets its modules built anew. Modules are built
// with this machine's compiler, which must be the one the kernel was
// built with (CONFIG_CC_VERSION_TEXT).
type Path struct {
	Image, Modules, Build string
	Cache                 *cache.Cache
}

// SpecError is a kernel spec that cannot be used.
type SpecError struct {
	Spec, Problem string
}

func (e *SpecError) Error() string {
	return fmt.Sprintf("kernel spec %q: %s", e.Spec, e.Problem)
}

// pathSyntax is the spec's form, for errors.
const pathSyntax = "path:/abs/bzImage?modules=/abs/lib/modules/RELEASE[&build=/abs/build]"

// parsePath reads a path: spec. Paths are taken as they are (no
// URL escapes: a release may hold '+'); they cannot hold '?' or '&'.
func parsePath(spec string, c *cache.Cache) (*Path, error) {
	bad := func(format string, args ...any) (*Path, error) {
		return nil, &SpecError{Spec: spec, Problem: fmt.Sprintf(format, args...) + "; want " + pathSyntax}
	}
	image, query, _ := strings.Cut(strings.TrimPrefix(spec, "path:"), "?")
	p := &Path{Image: image, Cache: c}
	if !filepath.IsAbs(image) {
		return bad("the image %q is not an absolute path", image)
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		var to *string
		switch k {
		case "modules":
			to = &p.Modules
		case "build":
			to = &p.Build
		default:
			return bad("unknown parameter %q", k)
		}
		if seen[k] {
			return bad("%s given twice", k)
		}
		seen[k] = true
		if !filepath.IsAbs(v) {
			return bad("%s=%q is not an absolute path", k, v)
		}
		*to = filepath.Clean(v)
	}
	if p.Modules == "" {
		return bad("no modules folder (the guest loads its virtio drivers from it)")
	}
	p.Image = filepath.Clean(image)
	return p, nil
}

func (p *Path) Name() string {
	n := "path:" + p.Image + "?modules=" + p.Modules
	if p.Build != "" {
		n += "&build=" + p.Build
	}
	return n
}

// buildDir is the build tree: given, or the modules folder's build link.
func (p *Path) buildDir() string {
	if p.Build != "" {
		return p.Build
	}
	return filepath.Join(p.Modules, "build")
}

// check finds the kernel's release and says what of the three is missing
// or does not belong together.
func (p *Path) check() (string, error) {
	bad := func(format string, args ...any) (string, error) {
		return "", &SpecError{Spec: p.Name(), Problem: fmt.Sprintf(format, args...)}
	}
	rel, err := ImageRelease(p.Image)
	if err != nil {
		return bad("%v", err)
	}
	if !exists(filepath.Join(p.Modules, "modules.dep")) {
		return bad("%s has no modules.dep (run depmod for release %s, or give the folder make modules_install made)", p.Modules, rel)
	}
	if base := filepath.Base(p.Modules); base != rel {
		return bad("the modules folder %s is for release %s but the image is %s", p.Modules, base, rel)
	}
	build := p.buildDir()
	if !exists(filepath.Join(build, "Module.symvers")) {
		how := "set build="
		if p.Build != "" {
			how = "give"
		}
		return bad("%s is not a built kernel tree or its headers (no Module.symvers): %s the folder the kernel was built in", build, how)
	}
	// The release modules built there carry (Debian's headers have
	// another in include/config/kernel.release).
	if b, err := os.ReadFile(filepath.Join(build, "include/generated/utsrelease.h")); err == nil {
		if uts := strings.TrimSpace(strings.TrimPrefix(string(b), "#define UTS_RELEASE ")); uts != strconv.Quote(rel) {
			return bad("the build tree %s is for release %s but the image is %s", build, uts, rel)
		}
	}
	return rel, nil
}

// Kernel checks the three paths, caches the kernel and finds its compiler.
func (p *Path) Kernel(ctx context.Context, progress io.Writer) (*Kernel, error) {
	rel, err := p.check()
	if err != nil {
		return nil, err
	}
	build := p.buildDir()
	// What it is made of, by digest: the image and the exports modules
	// link against (in Kernel.String, so they key its modules' builds).
	var made []Package
	ids := []string{p.Name()}
	for _, f := range []string{p.Image, filepath.Join(build, "Module.symvers"), filepath.Join(p.Modules, "modules.dep"), filepath.Join(build, ".config")} {
		if !exists(f) {
			continue // .config: headers may lack it
		}
		h, err := cache.HashFiles(f)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", p.Name(), err)
		}
		ids = append(ids, f, h)
		if len(made) < 2 {
			made = append(made, Package{Name: f, Version: "sha256:" + h[:16]})
		}
	}
	exports, err := Exports(filepath.Join(build, "Module.symvers"))
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", p.Name(), err)
	}
	c := p.Cache
	if c == nil {
		if c, err = cache.Default(); err != nil {
			return nil, err
		}
	}
	k, err := cachedKernel(ctx, c, p.Name(), cache.Key("kernel-path-"+rel, ids...), func(ctx context.Context, dir string) error {
		if progress != nil {
			fmt.Fprintf(progress, "Caching kernel %s from %s\n", rel, p.Image)
		}
		img := filepath.Join(dir, "vmlinuz")
		if err := copyImage(p.Image, img); err != nil {
			return err
		}
		for link, to := range map[string]string{"modules": p.Modules, "build": build} {
			if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
				return err
			}
		}
		return writeManifest(dir, &Kernel{
			Release:        rel,
			Image:          img,
			ModulesDir:     filepath.Join(dir, "modules"),
			BuildDir:       filepath.Join(dir, "build"),
			Layer45Builtin: exports["register_customization"],
			Provider:       p.Name(),
			Packages:       made,
		})
	})
	if err != nil {
		return nil, err
	}
	if k.Toolchain, err = hostToolchain(ctx, execRunner, k.BuildDir, nil); err != nil {
		return nil, fmt.Errorf("kernel %s (%s): no compiler for its modules: %w", p.Name(), rel, err)
	}
	return k, nil
}

func copyImage(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
