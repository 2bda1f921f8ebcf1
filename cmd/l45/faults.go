package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"layer45/harness/artifacts"
	"layer45/harness/faults"
	"layer45/harness/infra"
	"layer45/harness/kernels"
	"layer45/harness/modules"
	"layer45/harness/repo"
	"layer45/harness/vm"
)

const faultsUsage = `usage: l45 faults [--only NAME,NAME...] [--sample]

Applies each deliberate fault (kernel/faults/NAME.patch) to a copy of the
Layer 4.5 tree (kernel/, or $L45_TREE), runs the end-to-end tests its header
names against the copy (L45_TREE=<copy>) and prints which tests turned red:
  CAUGHT  something turned red, and every red test names a rule of the fault
  MISSED  nothing turned red (a finding)
  STRAY   a red test names no rule of the fault (a finding)
  ERROR   the patch did not apply or compile, or the harness failed
The unpatched tree runs first (the baseline) with the union of the faults'
tests; a test red there is not credited to any fault.

  --only a,b   only these faults (names as in kernel/faults)
  --sample     also run each fault's sample tests (other rules' tests that
               must stay green: a red one makes the fault STRAY)

Writes faults.json and faults.md next to the evidence ($L45_ARTIFACTS or
_artifacts/). Exit status: 0 every fault caught and none stray; 1 a finding,
a patch that does not apply or compile, or misuse; 3 the harness failed.`

// Bounds of one go test run: a fault's tests, and the baseline, which runs
// the union of them all (about the whole suite, as l45 e2e does).
const (
	faultTimeout    = "60m"
	baselineTimeout = "80m"
)

// faultsCmd runs l45 faults: progress and test results as they come on
// standard output, then the table.
func faultsCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("l45 faults", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	only := fs.String("only", "", "")
	sample := fs.Bool("sample", false, "")
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	if err := fs.Parse(args); err != nil {
		misuse("faults", faultsUsage, "%v", err)
	}
	if *help {
		fmt.Println(faultsUsage)
		return nil
	}
	if fs.NArg() > 0 {
		misuse("faults", faultsUsage, "unexpected arguments %q", fs.Args())
	}
	root, err := repo.Root()
	if err != nil {
		return err
	}
	all, err := faults.Load(filepath.Join(root, "kernel", "faults"))
	if err != nil {
		return err
	}
	var names []string
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	list, err := faults.Select(all, names)
	if err != nil {
		misuse("faults", faultsUsage, "--only: %v", err)
	}
	tree, err := repo.KernelTree()
	if err != nil {
		return infra.Wrap("find the Layer 4.5 tree", err)
	}
	run := &faultRun{tree: tree, sample: *sample, out: os.Stdout}
	return run.all(ctx, list)
}

type faultRun struct {
	tree   string
	sample bool
	out    io.Writer
	// env is the guests' environment, made for the unpatched tree, which
	// built for its kernel: a fault that does not build is the patch's
	// doing.
	env *vm.Env
}

func (r *faultRun) printf(format string, args ...any) { fmt.Fprintf(r.out, format, args...) }

func (r *faultRun) all(ctx context.Context, list []*faults.Fault) error {
	start := time.Now()
	spec := os.Getenv("L45_KERNEL")
	if spec == "" {
		spec = "debian:" + kernels.DefaultDebianSuite
	}
	rep := &faults.Report{Kernel: spec, Tree: r.tree, Sample: r.sample}

	// The guests' environment and the unpatched tree's build first: a
	// missing QEMU or kernel, or a tree that does not build without any
	// fault, is the harness's failure, reported once.
	env, err := r.prepare(ctx, r.tree)
	if err != nil {
		return err
	}
	r.env = env
	if _, err := modules.Build(ctx, env.Cache, env.Kernel, r.tree); err != nil {
		return infra.Wrap("build the unpatched Layer 4.5 tree "+r.tree, err)
	}

	var exprs []string
	for _, f := range list {
		exprs = append(exprs, f.Expr(r.sample))
	}
	union := faults.Union(exprs)
	r.printf("== baseline: the unpatched tree %s, -run '%s'\n", r.tree, union)
	bstart := time.Now()
	base := &faults.Baseline{Run: union}
	baseOut, err := r.goTest(ctx, union, r.tree, baselineTimeout)
	base.Seconds = time.Since(bstart).Seconds()
	if err != nil {
		base.Error = err.Error()
		rep.Baseline = base
		r.finish(rep, start)
		return infra.Wrap("run the baseline", err)
	}
	base.Red, base.Infra, base.Broken = baseOut.Red, baseOut.Infra, baseOut.Broken
	rep.Baseline = base
	r.printf("== baseline done in %s: %s\n", faults.Duration(base.Seconds), summarizeRed(baseOut))
	if len(baseOut.Broken) > 0 {
		// Every fault would hit the same wall.
		r.finish(rep, start)
		return infra.Wrap("run the baseline", fmt.Errorf("test packages did not build or their binary died: %v", baseOut.Broken))
	}

	for i, f := range list {
		r.printf("\n== fault %d of %d: %s (%s): %s\n", i+1, len(list), f.Name, strings.Join(f.Rules, " "), f.Models)
		fstart := time.Now()
		res := r.one(ctx, f, baseOut)
		res.Seconds = time.Since(fstart).Seconds()
		rep.Results = append(rep.Results, res)
		r.printf("== %s: %s in %s\n", f.Name, res.Verdict, faults.Duration(res.Seconds))
		if ctx.Err() != nil {
			break
		}
	}
	return r.finish(rep, start)
}

// finish prints the table, writes faults.json and faults.md, and turns the
// report into l45's exit status.
func (r *faultRun) finish(rep *faults.Report, start time.Time) error {
	rep.Seconds = time.Since(start).Seconds()
	r.printf("\nDeliberate faults (%s, tree %s; rules as stated in CONTRACT.md):\n", rep.Kernel, rep.Tree)
	rep.WriteTable(r.out)
	for _, f := range []struct {
		name string
		data []byte
	}{{"faults.json", rep.JSON()}, {"faults.md", rep.Markdown()}} {
		path, err := artifacts.WriteSummary(f.name, f.data)
		if err != nil {
			return infra.Wrap("write the faults report", err)
		}
		r.printf("written to %s\n", path)
	}
	switch {
	case rep.InfraFailed():
		return infra.Wrap("run the faults", errors.New("the harness failed for the baseline or some fault (see the table): their verdicts are missing"))
	case !rep.OK():
		c := rep.Counts()
		return fmt.Errorf("not every fault is caught cleanly: %d missed, %d stray, %d error (see the findings above)", c[faults.Missed], c[faults.Stray], c[faults.Error])
	}
	return nil
}

// one applies, builds and tests one fault.
func (r *faultRun) one(ctx context.Context, f *faults.Fault, base *faults.Outcome) faults.Result {
	dir, err := os.MkdirTemp("", "l45-fault-"+f.Name+"-")
	if err != nil {
		return faults.Failed(f, true, "temporary copy: %v", err)
	}
	if artifacts.Keep() {
		r.printf("   copy kept (L45_KEEP=1): %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if err := faults.CopyTree(r.tree, dir); err != nil {
		return faults.Failed(f, true, "copy %s: %v", r.tree, err)
	}
	applied, err := faults.Apply(ctx, f, dir, false)
	if err != nil {
		return faults.Failed(f, false, "%v", err)
	}
	warning := ""
	if applied.Fuzz {
		warning = "the patch applied only with fuzz: its context changed, check it still models " + strings.SplitN(f.Models, ":", 2)[0]
		r.printf("   warning: %s\n%s", warning, applied.Output)
	} else {
		r.printf("   patch applied to %s (%s)\n", dir, strings.Join(f.Files, ", "))
	}

	// Built here first, so that a patch that does not compile is told
	// from a harness failure; go test then finds the build in the cache.
	// A kernel with Layer 4.5 built in is built anew from the copy.
	env := r.env
	if env.Kernel.Layer45Builtin {
		if env, err = r.prepare(ctx, dir); err != nil {
			return faults.Failed(f, false, "the patched tree does not build into the kernel: %v", err)
		}
	}
	set, err := modules.Build(ctx, env.Cache, env.Kernel, dir)
	if err != nil {
		return faults.Failed(f, false, "the patched tree does not compile: %v", err)
	}
	if n := strings.Count(set.Log, "warning:"); n > 0 {
		r.printf("   built with %d compiler warning(s), see %s/build.log\n", n, set.Dir)
	}

	o, err := r.goTest(ctx, f.Expr(r.sample), dir, faultTimeout)
	if err != nil {
		return faults.Failed(f, true, "%v", err)
	}
	res := faults.Classify(f, o, base)
	res.Warning = warning
	return res
}

// prepare makes the guests' environment for the tree at dir, as go test
// will (a kernel with Layer 4.5 built in is built from that tree).
func (r *faultRun) prepare(ctx context.Context, dir string) (*vm.Env, error) {
	var env *vm.Env
	err := withEnv(map[string]string{"L45_TREE": dir}, func() error {
		var err error
		env, err = vm.NewEnv(ctx, os.Getenv("L45_KERNEL"), os.Getenv("L45_ACCEL"), r.out)
		return err
	})
	return env, err
}

// goTest runs the suites selected by expr against the tree at dir with the
// runner l45 e2e uses (each test's result echoed as it finishes), and
// reads the outcome from the per-rule verdict. An error means go test
// could not run at all.
func (r *faultRun) goTest(ctx context.Context, expr, dir, timeout string) (*faults.Outcome, error) {
	sum, err := runSuites(ctx, map[string]string{"L45_TREE": dir}, []string{"-timeout", timeout, "-run", expr}, r.out)
	if err != nil {
		return nil, err
	}
	o := &faults.Outcome{}
	o.Add(sum)
	return o, nil
}

func summarizeRed(o *faults.Outcome) string {
	names := faults.RedAt(o)
	s := "no test red"
	if len(names) > 0 {
		s = fmt.Sprintf("%d test(s) red, not credited to any fault: %s", len(names), strings.Join(names, ", "))
	}
	if len(o.Infra) > 0 {
		s += fmt.Sprintf("; %d infrastructure failure(s)", len(o.Infra))
	}
	return s
}
