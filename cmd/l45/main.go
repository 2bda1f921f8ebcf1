// Command l45 is the front end of the Layer 4.5 test harness:
//
//	l45 setup    fetch the default kernel and build the guest image (idempotent)
//	l45 e2e      run the end-to-end suites and print a per-rule verdict
//	l45 cache    list, prune or clean the cache (l45 cache help)
//	l45 faults   run the suites against each deliberate fault of kernel/faults (l45 faults -h)
//	l45 matrix   run the suites on every kernel of kernel/matrix.json ($L45_MATRIX), one table;
//	             l45 matrix merge DIR joins the results of per-kernel CI jobs
//	l45 repro    run a bug report (a repro file) and bundle the evidence; replay a bundle
//	             (l45 repro -h; exit 1 reproduced, 0 not, 125 no verdict: git bisect run)
//	l45 shell    the suites' pair of guests with Layer 4.5 loaded and a shell in one (l45 shell -h)
//
// Kernel and accelerator come from $L45_KERNEL and $L45_ACCEL as in tests.
//
// Exit status: 0 success; 1 the contract does not hold (a rule failed) or
// the command was misused; 3 the harness itself failed (no QEMU, a kernel
// that cannot be fetched or built, ...): no verdict on Layer 4.5.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"layer45/harness/cache"
	"layer45/harness/infra"
	"layer45/harness/vm"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: l45 setup | e2e [go test flags...] | faults [--only NAME,...] [--sample] | cache list|prune [--max SIZE]|clean | matrix [go test flags] | matrix merge DIR | repro [--repeat N] [-o BUNDLE] FILE | repro --replay BUNDLE | repro --example | shell [--guest server] [-- PROGRAM...]")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "setup":
		err = setup(ctx)
	case "e2e":
		err = e2e(ctx, os.Args[2:])
	case "cache":
		err = cacheCmd(ctx, os.Args[2:])
	case "faults":
		err = faultsCmd(ctx, os.Args[2:])
	case "matrix":
		err = matrixCmd(ctx, os.Args[2:])
	case "repro":
		// Its own exit statuses, which git bisect run reads.
		code := reproCmd(ctx, os.Args[2:])
		stop()
		os.Exit(code)
	case "shell":
		// The guest program's exit status, as ssh passes it on.
		code := shellCmd(ctx, os.Args[2:])
		stop()
		os.Exit(code)
	default:
		usage()
	}
	if err != nil {
		if infra.Is(err) {
			fmt.Fprintf(os.Stderr, "l45 %s: infrastructure failure, no verdict on Layer 4.5: %v\n", os.Args[1], err)
			os.Exit(exitInfra)
		}
		fmt.Fprintf(os.Stderr, "l45 %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// misuse prints what was wrong with a subcommand's words and its usage, and
// exits 2.
func misuse(cmd, usage, format string, args ...any) {
	if format != "" {
		fmt.Fprintf(os.Stderr, "l45 "+cmd+": "+format+"\n", args...)
	}
	fmt.Fprintln(os.Stderr, usage)
	os.Exit(2)
}

// exitInfra is the exit status when the harness could not do its job.
const exitInfra = 3

// minFreeBytes is what a kernel, its headers, images and builds need.
const minFreeBytes = 3 << 30

func setup(ctx context.Context) error {
	dir := cache.DefaultDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return infra.Wrap("cache directory "+dir, fmt.Errorf("%w (set L45_CACHE to a writable place)", err))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		if free := st.Bavail * uint64(st.Bsize); free < minFreeBytes {
			return infra.Wrap("cache directory "+dir, fmt.Errorf("only %d MiB free; the harness needs %d MiB: free some space or set L45_CACHE elsewhere", free>>20, minFreeBytes>>20))
		}
	}
	fmt.Printf("cache: %s\n", dir)
	env, err := vm.NewEnv(ctx, os.Getenv("L45_KERNEL"), os.Getenv("L45_ACCEL"), os.Stdout)
	if err != nil {
		return err
	}
	fmt.Printf("kernel: %s\n", env.Kernel)
	fmt.Printf("guest image: %s\n", env.Image)
	fmt.Printf("accelerator: %s\n", env.AccelNote)
	return nil
}
