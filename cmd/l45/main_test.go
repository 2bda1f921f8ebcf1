package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A machine without QEMU cannot judge Layer 4.5: l45 e2e must say that the
// harness failed, with its own exit status, and never print a verdict.
func TestE2EWithoutQEMUIsAnInfrastructureFailure(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "l45")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build l45: %v\n%s", err, out)
	}
	empty := t.TempDir() // a PATH with no qemu-system-x86_64 on it
	cmd := exec.Command(bin, "e2e")
	cmd.Env = append(os.Environ(), "PATH="+empty, "L45_CACHE="+t.TempDir(), "L45_ARTIFACTS="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInfra {
		t.Fatalf("l45 e2e without QEMU: want exit status %d, got %v\n%s", exitInfra, err, out)
	}
	for _, want := range []string{"infrastructure failure", "qemu-system-x86_64 is not installed", "make setup"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "contract does not hold") || strings.Contains(string(out), "RULE") {
		t.Errorf("an infrastructure failure was reported as a verdict:\n%s", out)
	}
}
