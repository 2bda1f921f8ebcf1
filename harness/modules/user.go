package modules

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"layer45/harness/kernels"
	"layer45/harness/repo"
)

// userMods is $L45_MODULES: a folder of Kbuild sources, built like the
// project's customization modules, or of prebuilt .ko files, checked
// against the guest's kernel.
type userMods struct {
	Sources  string   // the folder, when it holds sources
	Prebuilt []string // the .ko files, when it holds those
}

func userModules() (userMods, error) {
	dir, err := repo.UserModules()
	if err != nil || dir == "" {
		return userMods{}, err
	}
	if repo.HasKbuild(dir) {
		return userMods{Sources: dir}, nil
	}
	kos, err := filepath.Glob(filepath.Join(dir, "*.ko"))
	if err != nil || len(kos) == 0 {
		return userMods{}, fmt.Errorf("L45_MODULES=%s holds neither module sources (a Kbuild or Makefile) nor prebuilt .ko files", dir)
	}
	return userMods{Prebuilt: kos}, nil
}

// VermagicError is a prebuilt module the guest's kernel would refuse.
type VermagicError struct {
	Module, Got, Want, Kernel string
}

func (e *VermagicError) Error() string {
	return fmt.Sprintf("L45_MODULES: %s was built for %q but kernel %s takes %q: rebuild it against that kernel's headers, or put its sources in L45_MODULES to have them built",
		e.Module, e.Got, e.Kernel, e.Want)
}

// modinfo reads one field of a module file (compressed ones too).
var modinfo = func(ctx context.Context, field, file string) (string, error) {
	out, err := exec.CommandContext(ctx, "modinfo", "-F", field, file).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("modinfo -F %s %s: %w %s (modinfo comes with kmod: make setup)", field, file, err, stderr)
	}
	return strings.TrimSpace(string(out)), nil
}

// addPrebuilt adds the user's prebuilt modules to s once each carries the
// vermagic of k's own modules (release and the options that must match),
// or for a kernel without modules, at least k's release.
func addPrebuilt(ctx context.Context, s *Set, k *kernels.Kernel, kos []string) error {
	if len(kos) == 0 {
		return nil
	}
	ref, err := kernelModule(k.ModulesDir)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	want := k.Release
	if ref != "" {
		if want, err = modinfo(ctx, "vermagic", ref); err != nil {
			return err
		}
	}
	for _, ko := range kos {
		got, err := modinfo(ctx, "vermagic", ko)
		if err != nil {
			return err
		}
		if release, _, _ := strings.Cut(got, " "); ref == "" && release != want || ref != "" && got != want {
			return &VermagicError{Module: ko, Got: got, Want: want, Kernel: k.Release}
		}
		if err := s.add(ko); err != nil {
			return fmt.Errorf("L45_MODULES: %w", err)
		}
	}
	return nil
}

// kernelModule is the first module modules.dep in dir lists, "" when it
// lists none: every module loaded into the kernel carries its vermagic.
func kernelModule(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(string(b), ":")
	if first == "" {
		return "", nil
	}
	return filepath.Join(dir, first), nil
}
