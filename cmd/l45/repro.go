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

	"layer45/harness/artifacts"
	"layer45/harness/repro"
)

const reproUsage = `usage: l45 repro [--repeat N] [-o BUNDLE.tar.gz] FILE
       l45 repro --replay BUNDLE.tar.gz [--repeat N] [-o BUNDLE.tar.gz]
       l45 repro --example

Runs a bug report: boots a fresh server and client with the kernel and the
Layer 4.5 tree FILE names, loads its modules, runs its steps, judges what it
says counts as reproduced and writes one bundle with the evidence, the
kernel and the modules (l45 repro --example prints a template with every
field explained). --replay runs a bundle again from what it carries alone.

  --repeat N   run N times, each on fresh guests: "reproduced k of N"
  -o FILE      the bundle to write (default $L45_ARTIFACTS/repro/NAME-RUN.tar.gz)

Exit status: 1 reproduced (in any run), 0 not reproduced, 125 no verdict:
a bad file or command line, a tree that does not compile, a kernel that
cannot be had, a module refused, a run that stopped before it could judge.
So "git bisect run l45 repro FILE" bisects a Layer 4.5 tree.`

// reproCmd runs l45 repro and returns its exit status.
func reproCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("l45 repro", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	repeat := fs.Int("repeat", 1, "")
	out := fs.String("o", "", "")
	replay := fs.String("replay", "", "")
	example := fs.Bool("example", false, "")
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	bad := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "l45 repro: "+format+"\n%s\n", append(args, reproUsage)...)
		return repro.ExitCannotRun
	}
	if err := fs.Parse(args); err != nil {
		return bad("%v", err)
	}
	switch {
	case *help:
		fmt.Println(reproUsage)
		return 0
	case *example:
		fmt.Print(repro.Example)
		return 0
	case *repeat < 1:
		return bad("--repeat %d: at least 1", *repeat)
	case *replay == "" && fs.NArg() != 1:
		return bad("name one repro file")
	case *replay != "" && fs.NArg() != 0:
		return bad("--replay takes the bundle alone, not %q", fs.Args())
	}

	r := &repro.Runner{Progress: os.Stderr}
	var name string
	var u *repro.Unpacked
	if *replay != "" {
		var err error
		if u, err = repro.OpenBundle(*replay); err != nil {
			fmt.Fprintf(os.Stderr, "l45 repro: no verdict: %v\n", err)
			return repro.ExitCannotRun
		}
		defer u.Close()
		r.File, r.Input = u.File, u.Input
		r.ReplayOf, _ = filepath.Abs(*replay)
		name = repro.BundleName(*replay) + "-replay"
	} else {
		f, err := repro.Parse(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(os.Stderr, "l45 repro: bad repro file (l45 repro --example shows every field):\n%v\n", err)
			return repro.ExitCannotRun
		}
		r.File, r.Input = f, f.Input
		name = strings.TrimSuffix(filepath.Base(f.Name), filepath.Ext(f.Name))
	}
	r.Platform = &repro.VM{File: r.File, Bundle: u, Name: name, Progress: os.Stderr}
	r.Out = *out
	if r.Out == "" {
		r.Out = filepath.Join(artifacts.Root(), "repro", name+"-"+artifacts.RunID()+".tar.gz")
	}
	r.Out, _ = filepath.Abs(r.Out)

	rep, err := r.Run(ctx, *repeat)
	code := repro.ExitCode(rep, err)
	if rep != nil {
		for _, run := range rep.Runs {
			fmt.Printf("run %d: %s\n", run.N, run.Outcome)
			for _, w := range run.Why {
				fmt.Printf("  %s\n", strings.ReplaceAll(w, "\n", "\n  "))
			}
		}
		fmt.Println(rep.Summary(*repeat))
		if rep.Size > 0 {
			fmt.Printf("bundle: %s (%.1f MiB); replay: l45 repro --replay %s\n", rep.Bundle, float64(rep.Size)/(1<<20), rep.Bundle)
		}
	}
	var fe *repro.FileError
	switch {
	case err != nil && errors.As(err, &fe):
		fmt.Fprintf(os.Stderr, "l45 repro: bad repro file:\n%v\n", err)
	case err != nil:
		fmt.Fprintf(os.Stderr, "l45 repro: no verdict: %v\n", err)
	}
	return code
}
