package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"layer45/harness/artifacts"
	"layer45/harness/infra"
	"layer45/harness/kernels"
)

// e2e runs the end-to-end suites with go test -json, prints each test's
// outcome as it finishes, then the per-rule verdict, which it also writes as
// JSON next to the evidence. It first prepares the guests' environment, so
// that a missing QEMU or kernel is reported as what it is, once, and not
// as every rule failing.
func e2e(ctx context.Context, extra []string) error {
	if err := prepare(ctx, nil, os.Stderr); err != nil {
		return err
	}
	start := time.Now()
	sum, err := runSuites(ctx, nil, extra, os.Stdout)
	if err != nil {
		return err
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
	return nil
}
