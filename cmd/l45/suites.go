package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"

	"layer45/harness/infra"
	"layer45/harness/matrix"
	"layer45/harness/repo"
	"layer45/harness/verdict"
	"layer45/harness/vm"
)

// withEnv runs f with the variables of env set in this process (the
// harness reads L45_KERNEL and L45_TREE from it), restoring them after.
func withEnv(env map[string]string, f func() error) error {
	for k, v := range env {
		old, had := os.LookupEnv(k)
		os.Setenv(k, v)
		defer func() {
			if had {
				os.Setenv(k, old)
			} else {
				os.Unsetenv(k)
			}
		}()
	}
	return f()
}

// prepare makes the guests' environment for env (kernel fetched or built,
// image composed), so a kernel that cannot be had is reported once, as an
// infrastructure failure, before any test runs. Progress goes to progress.
func prepare(ctx context.Context, env map[string]string, progress io.Writer) error {
	return withEnv(env, func() error {
		_, err := vm.NewEnv(ctx, os.Getenv("L45_KERNEL"), os.Getenv("L45_ACCEL"), progress)
		return err
	})
}

// runSuites runs `go test -json` on the end-to-end suites with env added
// to the environment and args added to go test's flags, echoing each
// test's result to echo as it finishes, and returns the per-rule verdict.
// An error means the tests could not run or be read (an *infra.Error);
// failing tests are in the verdict.
func runSuites(ctx context.Context, env map[string]string, args []string, echo io.Writer) (*verdict.Summary, error) {
	var sum *verdict.Summary
	err := goTestJSON(ctx, env, append(args, "./suites/..."), func(r io.Reader) (err error) {
		sum, err = verdict.Read(r, echo)
		return err
	})
	return sum, err
}

// runCrashCheck runs the harness's crash recognition test (matrix.CrashTest)
// on env's kernel, echoing its output to echo.
func runCrashCheck(ctx context.Context, env map[string]string, echo io.Writer) (*matrix.CrashCheck, error) {
	var c *matrix.CrashCheck
	err := goTestJSON(ctx, env, []string{"-run", "^" + matrix.CrashTest + "$", "./harness/vm/"}, func(r io.Reader) (err error) {
		c, err = matrix.ReadCrashCheck(r, echo)
		return err
	})
	return c, err
}

// goTestJSON runs `go test -json` with args and env added to the
// environment, handing its output to read. A test failing is no error; go
// test not running, or its output not readable, is an *infra.Error.
func goTestJSON(ctx context.Context, env map[string]string, args []string, read func(io.Reader) error) error {
	root, err := repo.Root()
	if err != nil {
		return infra.Wrap("run go test", err)
	}
	goArgs := append([]string{"test", "-json", "-count=1", "-p", "1", "-timeout", "80m"}, args...)
	cmd := exec.CommandContext(ctx, "go", goArgs...)
	// The packages are named from the repository's top, wherever l45 runs.
	cmd.Dir = root
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(withoutVar(cmd.Env, k), k+"="+v)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return infra.Wrap("run go test", err)
	}
	if err := cmd.Start(); err != nil {
		return infra.Wrap("run go test", err)
	}
	readErr := read(out)
	io.Copy(io.Discard, out)
	waitErr := cmd.Wait()
	if readErr != nil {
		return infra.Wrap("read the test results", readErr)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return infra.Wrap("run go test", waitErr)
	}
	return nil
}

// withoutVar drops key's entries from an environment list.
func withoutVar(env []string, key string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}
