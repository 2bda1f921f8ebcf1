package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"layer45/harness/artifacts"
	"layer45/harness/infra"
	"layer45/harness/kernels"
	"layer45/harness/verdict"
	"layer45/harness/vm"
)

// e2e runs the end-to-end suites with go test -json, prints each test's
// outcome as it finishes, then the per-rule verdict, which it also writes as
// JSON next to the evidence. It first prepares the guests' environment, so
// that a missing QEMU or kernel is reported as what it is, once, and not
// as every rule failing.
func e2e(ctx context.Context, extra []string) error {
	if _, err := vm.NewEnv(ctx, os.Getenv("L45_KERNEL"), os.Getenv("L45_ACCEL"), os.Stderr); err != nil {
		return err
	}
	args := append([]string{"test", "-json", "-count=1", "-p", "1", "-timeout", "80m"}, extra...)
	args = append(args, "./suites/...")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return infra.Wrap("run go test", err)
	}
	sum, readErr := verdict.Read(out, os.Stdout)
	io.Copy(io.Discard, out)
	waitErr := cmd.Wait()
	if readErr != nil {
		return infra.Wrap("read the test results", readErr)
	}
	kernel := os.Getenv("L45_KERNEL")
	if kernel == "" {
		kernel = "default kernel, debian:" + kernels.DefaultDebianSuite
	}
	if tree := os.Getenv("L45_TREE"); tree != "" {
		kernel += ", Layer 4.5 from " + tree
	}
	fmt.Printf("\nLayer 4.5 contract verdict (%s, suites took %.0fs; rules as stated in CONTRACT.md):\n", kernel, time.Since(start).Seconds())
	sum.WriteTable(os.Stdout)
	b, _ := json.MarshalIndent(sum, "", "  ")
	path, err := artifacts.WriteSummary("verdict.json", append(b, '\n'))
	if err != nil {
		return infra.Wrap("write the verdict", err)
	}
	fmt.Printf("verdict written to %s\n", path)
	if len(sum.Infra) > 0 {
		return infra.Wrap("run the suites", fmt.Errorf("%d test(s) could not run (see the table above)", len(sum.Infra)))
	}
	if !sum.OK() {
		if len(sum.Broken) > 0 {
			return fmt.Errorf("test packages did not build or their binary died: %v", sum.Broken)
		}
		return fmt.Errorf("the contract does not hold on this kernel (see the table above)")
	}
	if waitErr != nil {
		return fmt.Errorf("go test: %w", waitErr)
	}
	return nil
}
