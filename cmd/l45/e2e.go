package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"layer45/harness/artifacts"
	"layer45/harness/infra"
	"layer45/harness/kernels"
)

// e2e runs the end-to-end suites with go test -json, prints each test's
// outcome as it finishes, then the per-rule verdict, which it also writes as
// JSON next to the evidence. It first prepares the guests' environment, so
// that a missing QEMU or kernel (or a tree its settings do not describe) is
// reported as what it is, once, and not as every rule failing.
//
// --tree DIR and --modules DIR stand for L45_TREE and L45_MODULES; the
// other words are go test's.
func e2e(ctx context.Context, args []string) error {
	env, extra, err := e2eFlags(args)
	if err != nil {
		misuse("e2e", "usage: l45 e2e [--tree DIR] [--modules DIR] [go test flags...]", "%v", err)
	}
	if err := prepare(ctx, env, os.Stderr); err != nil {
		return err
	}
	start := time.Now()
	sum, err := runSuites(ctx, env, extra, os.Stdout)
	if err != nil {
		return err
	}
	kernel := os.Getenv("L45_KERNEL")
	if kernel == "" {
		kernel = "default kernel, debian:" + kernels.DefaultDebianSuite
	}
	if tree := cmp.Or(env["L45_TREE"], os.Getenv("L45_TREE")); tree != "" {
		kernel += ", Layer 4.5 from " + tree
	}
	if mods := cmp.Or(env["L45_MODULES"], os.Getenv("L45_MODULES")); mods != "" {
		kernel += ", modules of " + mods
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

// e2eFlags takes --tree and --modules (as --NAME DIR or --NAME=DIR) out of
// args: the variables they set, with absolute paths, and the other words.
func e2eFlags(args []string) (env map[string]string, rest []string, err error) {
	vars := map[string]string{"--tree": "L45_TREE", "--modules": "L45_MODULES"}
	env = map[string]string{}
	for i := 0; i < len(args); i++ {
		name, val, inline := strings.Cut(args[i], "=")
		v, ok := vars[name]
		if !ok {
			rest = append(rest, args[i])
			continue
		}
		if !inline {
			if i++; i == len(args) {
				return nil, nil, fmt.Errorf("%s needs a folder", name)
			}
			val = args[i]
		}
		if val == "" {
			return nil, nil, fmt.Errorf("%s needs a folder", name)
		}
		if env[v], err = filepath.Abs(val); err != nil {
			return nil, nil, err
		}
	}
	return env, rest, nil
}
