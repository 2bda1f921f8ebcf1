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

// The merge job of a CI matrix: one job reported, one did not; the table
// shows both, and the exit status is red.
func TestMatrixMergeOfJobsWithOneMissing(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "l45")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build l45: %v\n%s", err, out)
	}
	jobs := t.TempDir()
	res := `{"kernel":{"name":"6.1","kernel":"debian:bookworm:6.1","nightly":true,"debug":false},"outcome":"infra","error":"prepare guests: no QEMU","seconds":1}`
	if err := os.WriteFile(filepath.Join(jobs, "matrix-6.1.json"), []byte(res), 0o644); err != nil {
		t.Fatal(err)
	}
	arts := t.TempDir()
	cmd := exec.Command(bin, "matrix", "merge", jobs)
	cmd.Env = append(os.Environ(), "L45_MATRIX=6.1,7.2", "L45_ARTIFACTS="+arts)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("merge with a missing job: want exit 1, got %v\n%s", err, out)
	}
	for _, want := range []string{"RULE  6.1    7.2", "R9    INFRA  MISSING", "7.2 (debian:sid:7.2): no result (the job did not report)", "6.1 (debian:bookworm:6.1): not run: prepare guests: no QEMU"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"matrix.json", "matrix.md"} {
		if _, err := os.Stat(filepath.Join(arts, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}
