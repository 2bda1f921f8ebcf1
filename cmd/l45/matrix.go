package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"layer45/harness/artifacts"
	"layer45/harness/infra"
	"layer45/harness/kernels"
	"layer45/harness/matrix"
	"layer45/harness/repo"
)

// matrixCmd runs the suites on every kernel of the matrix in turn (or
// joins the results of per-kernel CI jobs with "merge DIR") and prints one
// table, rules down and kernels across.
//
//	l45 matrix [go test flags]   the kernels named by $L45_MATRIX (default: the nightly ones)
//	l45 matrix merge DIR         join the matrix-NAME.json results found in DIR
func matrixCmd(ctx context.Context, args []string) error {
	root, err := repo.Root()
	if err != nil {
		return infra.Wrap("find the repository", err)
	}
	all, err := kernels.LoadMatrix(filepath.Join(root, kernels.MatrixFile))
	if err != nil {
		return err
	}
	subset := os.Getenv("L45_MATRIX")
	if subset == "" {
		subset = "nightly"
	}
	selected, err := kernels.SelectMatrix(all, subset)
	if err != nil {
		return err
	}
	if len(args) > 0 && args[0] == "merge" {
		if len(args) != 2 {
			return fmt.Errorf("usage: l45 matrix merge DIR (the folder holding the jobs' matrix-NAME.json files)")
		}
		return finishMatrix(selected, args[1])
	}
	dir := filepath.Join(artifacts.Root(), "matrix")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return infra.Wrap("results folder", err)
	}
	start := time.Now()
	for i, e := range selected {
		fmt.Printf("\n=== kernel %d of %d: %s\n", i+1, len(selected), e)
		r := runKernel(ctx, e, args)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p, err := r.Write(dir)
		if err != nil {
			return infra.Wrap("write the result of "+e.Name, err)
		}
		fmt.Printf("=== kernel %d of %d: %s: %s in %.0fs, result in %s\n", i+1, len(selected), e.Name, outcomeWord(r), r.Seconds, p)
	}
	fmt.Printf("\nmatrix of %d kernel(s) took %.0fs\n", len(selected), time.Since(start).Seconds())
	return finishMatrix(selected, dir)
}

// runKernel prepares one kernel and runs the suites on it; whatever goes
// wrong is recorded in the result, so the matrix goes on.
func runKernel(ctx context.Context, e kernels.MatrixEntry, args []string) *matrix.Result {
	start := time.Now()
	r := &matrix.Result{Kernel: e}
	env := map[string]string{"L45_KERNEL": e.Kernel}
	err := prepare(ctx, env, os.Stderr)
	if err == nil {
		r.Verdict, err = runSuites(ctx, env, args, os.Stdout)
	}
	if err == nil {
		fmt.Printf("--- %s: crash reports of every kind crash_test provokes (%s)\n", e.Name, matrix.CrashTest)
		r.Crashes, err = runCrashCheck(ctx, env, io.Discard)
	}
	r.Seconds = time.Since(start).Seconds()
	if err != nil {
		r.Outcome, r.Error = matrix.Infra, err.Error()
		return r
	}
	r.Outcome = matrix.Ran
	return r
}

func outcomeWord(r *matrix.Result) string {
	switch {
	case r.Outcome != matrix.Ran:
		return "not run (" + r.Error + ")"
	case r.Verdict.OK() && r.Crashes.OK():
		return "every rule holds, every crash report recognised"
	case r.Verdict.OK():
		return "every rule holds; RED: crash reports not all recognised"
	default:
		return "RED"
	}
}

// finishMatrix joins the results in dir, prints the table and writes it as
// JSON and Markdown next to the evidence.
func finishMatrix(selected []kernels.MatrixEntry, dir string) error {
	tab, err := matrix.Merge(selected, dir)
	if err != nil {
		return err
	}
	fmt.Println("\nLayer 4.5 contract on the kernel matrix (rules as stated in CONTRACT.md):")
	tab.WriteText(os.Stdout)
	b, _ := json.MarshalIndent(tab, "", "  ")
	jp, err := artifacts.WriteSummary("matrix.json", append(b, '\n'))
	if err != nil {
		return infra.Wrap("write the matrix", err)
	}
	var md bytes.Buffer
	tab.WriteMarkdown(&md)
	mp, err := artifacts.WriteSummary("matrix.md", md.Bytes())
	if err != nil {
		return infra.Wrap("write the matrix", err)
	}
	fmt.Printf("matrix written to %s and %s\n", jp, mp)
	if !tab.OK() {
		return fmt.Errorf("the contract does not hold on every kernel of the matrix (see the table above)")
	}
	return nil
}
