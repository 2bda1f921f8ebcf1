package kernels

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
)

// Dir is a kernel already unpacked in a folder that a kernel.json manifest
// describes (spec dir:PATH), as a repro bundle carries it: booted as it
// is, never fetched or built, so it outlives the archive it came from. It
// carries no headers: modules for it come built with it.
type Dir struct {
	Path string
}

func (d *Dir) Name() string { return "dir:" + d.Path }

// Kernel reads the folder's manifest; the provider it names is where the
// kernel came from in the first place.
func (d *Dir) Kernel(context.Context, io.Writer) (*Kernel, error) {
	if _, err := os.Stat(filepath.Join(d.Path, manifestName)); err != nil {
		return nil, fmt.Errorf("kernel %s: %w (a kernel folder holds %s, as l45 repro bundles write it)", d.Name(), err, manifestName)
	}
	return readManifest(d.Path)
}

// Pack lays k out as a folder for the dir: provider holding only what
// booting it takes: the image, its configuration (which tells which
// module compressions the kernel unpacks itself) and, of its modules
// folder, the index and the files named by moduleFiles (relative to
// k.ModulesDir: those the guest image carries). It returns the folder's
// files (slash-separated path in the folder -> the file to copy there)
// and its manifest, which goes in the folder as kernel.json.
func Pack(k *Kernel, moduleFiles []string) (files map[string]string, manifest []byte, err error) {
	p := *k
	p.Image = "vmlinuz"
	p.ModulesDir = path.Join("modules", k.Release)
	p.BuildDir = "build"
	files = map[string]string{p.Image: k.Image}
	for _, f := range append([]string{"modules.dep", "modules.builtin"}, moduleFiles...) {
		files[path.Join(p.ModulesDir, filepath.ToSlash(f))] = filepath.Join(k.ModulesDir, f)
	}
	if conf := filepath.Join(k.BuildDir, ".config"); k.BuildDir != "" && exists(conf) {
		files[path.Join(p.BuildDir, ".config")] = conf
	} else {
		p.BuildDir = "" // modules are then unpacked on the host
	}
	if !exists(files[path.Join(p.ModulesDir, "modules.builtin")]) {
		delete(files, path.Join(p.ModulesDir, "modules.builtin")) // a kernel without modules
	}
	for _, from := range files {
		if _, err := os.Stat(from); err != nil {
			return nil, nil, fmt.Errorf("pack kernel %s: %w", k.Release, err)
		}
	}
	b, err := json.MarshalIndent(&p, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	return files, append(b, '\n'), nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
