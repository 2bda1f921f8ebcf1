package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// l45 faults without guests: misuse is exit status 2 and says why, and a
// machine without QEMU is an infrastructure failure (3), never a table of
// faults judged.
func TestFaultsCommandWithoutGuests(t *testing.T) {
	run := func(env []string, args ...string) (int, string) {
		return runL45(t, env, append([]string{"faults"}, args...)...)
	}

	code, out := run(nil, "--only", "error-sign,no-such-fault")
	if code != 2 || !strings.Contains(out, `no fault "no-such-fault"`) || !strings.Contains(out, "usage: l45 faults") {
		t.Errorf("--only with an unknown fault: exit %d, want 2 naming it\n%s", code, out)
	}
	code, out = run(nil, "stray-argument")
	if code != 2 {
		t.Errorf("an argument: exit %d, want 2\n%s", code, out)
	}
	code, out = run(nil, "-h")
	if code != 0 || !strings.Contains(out, "MISSED") {
		t.Errorf("-h: exit %d\n%s", code, out)
	}

	artifactsDir := t.TempDir()
	code, out = run([]string{"PATH=" + t.TempDir(), "L45_CACHE=" + t.TempDir(), "L45_ARTIFACTS=" + artifactsDir}, "--only", "error-sign")
	if code != exitInfra {
		t.Fatalf("without QEMU: exit %d, want %d\n%s", code, exitInfra, out)
	}
	for _, want := range []string{"infrastructure failure", "qemu-system-x86_64 is not installed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "CAUGHT") || strings.Contains(out, "MISSED") {
		t.Errorf("an infrastructure failure was reported as a verdict on a fault:\n%s", out)
	}
}

// goTest hands go test the fault's -run expression and the patched tree,
// and reads the outcome through the verdict: a failing exit status of go
// test is the tests failing, not an error.
func TestFaultsGoTestRunsTheTreeAndReadsTheVerdict(t *testing.T) {
	bin := t.TempDir()
	argsFile := filepath.Join(t.TempDir(), "args")
	script := `#!/bin/sh
printf '%s\n' "$*" "L45_TREE=$L45_TREE" > "$FAKE_GO_ARGS"
cat <<'END'
{"Action":"run","Package":"layer45/suites","Test":"TestR3_R4_DropAndError"}
{"Action":"run","Package":"layer45/suites","Test":"TestR3_R4_DropAndError/R4/send-EPERM-tcp"}
{"Action":"fail","Package":"layer45/suites","Test":"TestR3_R4_DropAndError/R4/send-EPERM-tcp","Elapsed":3}
{"Action":"run","Package":"layer45/suites","Test":"TestR3_R4_DropAndError/R3/drop-send-udp"}
{"Action":"pass","Package":"layer45/suites","Test":"TestR3_R4_DropAndError/R3/drop-send-udp","Elapsed":2}
{"Action":"fail","Package":"layer45/suites","Test":"TestR3_R4_DropAndError","Elapsed":9}
{"Action":"fail","Package":"layer45/suites","Elapsed":10}
END
exit 1
`
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_GO_ARGS", argsFile)
	t.Setenv("L45_TREE", "/somewhere/else")
	var echo strings.Builder
	r := &faultRun{out: &echo}
	o, err := r.goTest(t.Context(), "TestR3_R4_DropAndError/^R4$|TestR3_R4_DropAndError/^R3$/drop-send", "/tmp/l45-fault-x", faultTimeout)
	if err != nil {
		t.Fatalf("goTest: %v", err)
	}
	args, _ := os.ReadFile(argsFile)
	// The shared runner's own -timeout comes first; go test takes the last.
	want := "test -json -count=1 -p 1 -timeout 80m -timeout 60m -run TestR3_R4_DropAndError/^R4$|TestR3_R4_DropAndError/^R3$/drop-send ./suites/...\nL45_TREE=/tmp/l45-fault-x\n"
	if string(args) != want {
		t.Errorf("go was run as\n%s\nwant\n%s", args, want)
	}
	if len(o.Red) != 1 || o.Red[0].Name != "TestR3_R4_DropAndError/R4/send-EPERM-tcp" || strings.Join(o.Red[0].Rules, " ") != "R4" {
		t.Errorf("red tests: %+v", o.Red)
	}
	if o.Ran != 2 || len(o.Infra) != 0 || len(o.Broken) != 0 {
		t.Errorf("outcome: %+v", o)
	}
	if !strings.Contains(echo.String(), "--- FAIL: TestR3_R4_DropAndError/R4/send-EPERM-tcp") {
		t.Errorf("results were not streamed:\n%s", echo.String())
	}
}
