package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// l45Bin is the l45 binary the tests run, built once by TestMain.
var l45Bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "l45-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	l45Bin = filepath.Join(dir, "l45")
	if out, err := exec.Command("go", "build", "-o", l45Bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build l45: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runL45 runs l45 with args and env added to the environment, returning
// its exit status and combined output; failing to run it at all fails t.
func runL45(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(l45Bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("l45 %v: %v\n%s", args, err, out)
	return -1, ""
}

// A machine without QEMU cannot judge Layer 4.5: l45 e2e must say that the
// harness failed, with its own exit status, and never print a verdict.
func TestE2EWithoutQEMUIsAnInfrastructureFailure(t *testing.T) {
	empty := t.TempDir() // a PATH with no qemu-system-x86_64 on it
	code, out := runL45(t, []string{"PATH=" + empty, "L45_CACHE=" + t.TempDir(), "L45_ARTIFACTS=" + t.TempDir()}, "e2e")
	if code != exitInfra {
		t.Fatalf("l45 e2e without QEMU: want exit status %d, got %d\n%s", exitInfra, code, out)
	}
	for _, want := range []string{"infrastructure failure", "qemu-system-x86_64 is not installed", "make setup"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "contract does not hold") || strings.Contains(out, "RULE") {
		t.Errorf("an infrastructure failure was reported as a verdict:\n%s", out)
	}
}

// The merge job of a CI matrix: one job reported, one did not; the table
// shows both, and the exit status is red.
func TestMatrixMergeOfJobsWithOneMissing(t *testing.T) {
	jobs := t.TempDir()
	res := `{"kernel":{"name":"6.1","kernel":"debian:bookworm:6.1","nightly":true,"debug":false},"outcome":"infra","error":"prepare guests: no QEMU","seconds":1}`
	if err := os.WriteFile(filepath.Join(jobs, "matrix-6.1.json"), []byte(res), 0o644); err != nil {
		t.Fatal(err)
	}
	arts := t.TempDir()
	code, out := runL45(t, []string{"L45_MATRIX=6.1,7.2", "L45_ARTIFACTS=" + arts}, "matrix", "merge", jobs)
	if code != 1 {
		t.Fatalf("merge with a missing job: want exit 1, got %d\n%s", code, out)
	}
	for _, want := range []string{"RULE           6.1    7.2", "R9             INFRA  MISSING", "crash reports  -      -", "7.2 (debian:sid:7.2): no result (the job did not report)", "6.1 (debian:bookworm:6.1): not run: prepare guests: no QEMU"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"matrix.json", "matrix.md"} {
		if _, err := os.Stat(filepath.Join(arts, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}
