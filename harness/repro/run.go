package repro

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"layer45/harness/agent"
	"layer45/harness/console"
	"layer45/harness/kernels"
	"layer45/harness/pcapdns"
	"layer45/harness/vm"
	"layer45/vmimages/guest"
)

// Exit statuses of l45 repro, as git bisect run reads them.
const (
	ExitNotReproduced = 0
	ExitReproduced    = 1
	// ExitCannotRun: no verdict (bad file, tree that does not compile,
	// kernel that cannot be had, module refused, a run that stopped
	// before it could judge); git bisect skips the commit.
	ExitCannotRun = 125
)

// Platform is where runs happen: it prepares the kernel and the modules
// once, then gives each run a fresh pair of guests. VM is the real one.
type Platform interface {
	Prepare(ctx context.Context) (*Build, error)
	NewPair(ctx context.Context, run int) (Pair, error)
}

// Build is what Prepare made: what the guests boot and load, and what the
// bundle records of it.
type Build struct {
	// KernelSpec is as the file gave it.
	KernelSpec string
	Kernel     *kernels.Kernel
	// KernelFiles are the files of Kernel.ModulesDir the guests load
	// (kernels.Pack takes them).
	KernelFiles []string
	// Modules maps every module the run may load (Layer 4.5's core
	// included, unless built in) to its .ko.
	Modules map[string]string
	// BuildLog is how the modules were built (compiler, warnings).
	BuildLog string
	// Tree is the Layer 4.5 tree built ("" on a replay); TreeSums the
	// sha256sum lines of its sources.
	Tree, TreeSums string
	// Host says what ran the guests (QEMU, the guests' programs, the
	// accelerator), for the bundle.
	Host string
}

// Pair is a server and a client on one link, with an evidence folder.
type Pair interface {
	// Boot starts the server, then the client.
	Boot(ctx context.Context) error
	// Guest is the server or the client, once booted.
	Guest(name string) Guest
	// Dir is the evidence folder: consoles, QEMU command lines, kernel
	// logs, trace buffers, the link's capture.
	Dir() string
	// Pcap is the link's capture.
	Pcap() string
	// Finish saves the kernel log and trace buffer of each guest that
	// can still tell them and powers both off: the consoles are complete.
	Finish(ctx context.Context)
	// Close releases the link and the evidence folder.
	Close()
}

// Guest is what a run does in one guest.
type Guest interface {
	Exec(ctx context.Context, cmd agent.Cmd) (*agent.Result, error)
	Spawn(ctx context.Context, argv []string) (Process, error)
	WriteFile(ctx context.Context, file string, data []byte, mode os.FileMode) error
	// Load loads a module of the Build (by name) with params.
	Load(ctx context.Context, module, params string) error
	Listening(ctx context.Context, proto string, port int) (bool, error)
	Crashes() []console.Report
}

// Process is a background step's program.
type Process interface {
	Stop(ctx context.Context) (*agent.Result, error)
}

// Outcome is one run's verdict.
type Outcome int

const (
	NotReproduced Outcome = iota
	Reproduced
	// Undecided: the run stopped before it could see what the
	// conditions ask about.
	Undecided
	// CouldNotRun: the run failed before its steps (boot, module refused,
	// program missing).
	CouldNotRun
)

func (o Outcome) String() string {
	return [...]string{"not reproduced", "REPRODUCED", "undecided", "could not run"}[o]
}

// RunReport is one run.
type RunReport struct {
	N       int
	Outcome Outcome
	// Why has a line per condition (or the error that stopped the run).
	Why  []string
	Err  error
	Took time.Duration
}

// Report is every run of one l45 repro.
type Report struct {
	Runs []RunReport
	// Bundle is the bundle written, and its size.
	Bundle string
	Size   int64
}

// Count is how many runs reproduced the bug.
func (r *Report) Count() (reproduced, undecided int) {
	for _, run := range r.Runs {
		switch run.Outcome {
		case Reproduced:
			reproduced++
		case Undecided, CouldNotRun:
			undecided++
		}
	}
	return reproduced, undecided
}

// Summary is the one line l45 repro ends with.
func (r *Report) Summary(repeat int) string {
	k, u := r.Count()
	s := fmt.Sprintf("reproduced %d of %d", k, repeat)
	if u > 0 {
		s += fmt.Sprintf(" (%d could not run or judge)", u)
	}
	if len(r.Runs) < repeat {
		s += fmt.Sprintf("; stopped after run %d", len(r.Runs))
	}
	return s
}

// ExitCode maps a Run's result to l45 repro's exit status: reproduced in
// some run is 1 whatever else happened; otherwise any run (or the set-up)
// that could not run or judge is 125; otherwise 0.
func ExitCode(r *Report, err error) int {
	if r != nil {
		if k, u := r.Count(); k > 0 {
			return ExitReproduced
		} else if u > 0 {
			return ExitCannotRun
		}
	}
	if err != nil || r == nil || len(r.Runs) == 0 {
		return ExitCannotRun
	}
	return ExitNotReproduced
}

// Runner runs a repro file on a Platform and writes the bundle.
type Runner struct {
	File     *File
	Platform Platform
	// Input reads a file to copy into the named guest: from the host
	// (File.HostFile), or from a bundle when replaying.
	Input func(guest string, c Copy) ([]byte, error)
	// Out is the bundle to write.
	Out string
	// ReplayOf is the bundle replayed, if any.
	ReplayOf string
	// Progress gets a line for everything slow.
	Progress io.Writer

	start time.Time
}

func (r *Runner) progressf(format string, args ...any) {
	if r.Progress != nil {
		fmt.Fprintf(r.Progress, "[%4.0fs] %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

// Run prepares the platform, runs the file repeat times on fresh guests
// and writes the bundle. An error is a failure to prepare (the tree does
// not compile, the kernel cannot be had, a module the file names is not
// in the tree) or to write the bundle; a run that fails is in the Report.
func (r *Runner) Run(ctx context.Context, repeat int) (*Report, error) {
	r.start = time.Now()
	if repeat < 1 {
		repeat = 1
	}
	b, err := r.Platform.Prepare(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.checkModules(b); err != nil {
		return nil, err
	}
	bw, err := createBundle(r.Out)
	if err != nil {
		return nil, err
	}
	defer bw.abort()
	if err := bw.addInputs(r, b); err != nil {
		return nil, err
	}
	rep := &Report{Bundle: r.Out}
	for n := 1; n <= repeat; n++ {
		run := r.once(ctx, b, n, bw)
		rep.Runs = append(rep.Runs, run)
		r.progressf("run %d of %d: %s", n, repeat, run.Outcome)
		if run.Outcome == CouldNotRun || ctx.Err() != nil {
			break // the next run would fail the same way
		}
	}
	if rep.Size, err = bw.finish(r, b, rep, repeat); err != nil {
		return rep, err
	}
	return rep, nil
}

// checkModules checks that the tree built every module the file loads.
func (r *Runner) checkModules(b *Build) error {
	var errs []error
	for _, g := range []string{Server, Client} {
		for i, m := range r.File.Guest(g).Modules {
			if _, ok := b.Modules[m.Name]; !ok {
				errs = append(errs, &FileError{File: r.File.Name, Line: m.Line, Field: at{g, "modules", i, "name"}.String(),
					Msg: fmt.Sprintf("the tree has no module %q (it has: %s)", m.Name, strings.Join(customizations(b), " "))})
			}
		}
	}
	return errors.Join(errs...)
}

func customizations(b *Build) []string {
	var names []string
	for n := range b.Modules {
		if n != guest.CoreModule {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// once is one run on a fresh pair.
func (r *Runner) once(ctx context.Context, b *Build, n int, bw *bundleWriter) RunReport {
	start := time.Now()
	run := RunReport{N: n}
	pair, err := r.Platform.NewPair(ctx, n)
	if err != nil {
		run.Outcome, run.Err, run.Why = CouldNotRun, err, []string{err.Error()}
		return run
	}
	defer pair.Close()
	o := &Observations{Results: map[string]*agent.Result{}, Crashes: map[string][]console.Report{}}
	booted, runErr := r.steps(ctx, b, n, pair, o)
	r.progressf("run %d: saving the guests' kernel logs and powering off", n)
	pair.Finish(ctx)
	if booted {
		for _, g := range []string{Server, Client} {
			o.Crashes[g] = pair.Guest(g).Crashes()
		}
	}
	if p := pair.Pcap(); p != "" {
		packets, err := pcapdns.ReadPackets(p)
		if err != nil && o.Stopped == "" {
			o.Stopped = "the capture cannot be read: " + err.Error()
		}
		o.Packets = packets
	}
	if runErr != nil {
		run.Outcome, run.Err, run.Why = CouldNotRun, runErr, []string{runErr.Error()}
	} else {
		t, why := Judge(r.File.Reproduced, o)
		run.Outcome, run.Why = map[Truth]Outcome{True: Reproduced, False: NotReproduced, Unknown: Undecided}[t], why
	}
	run.Took = time.Since(start)
	if err := bw.addRun(n, pair.Dir(), r.File, o, run); err != nil && run.Err == nil {
		run.Outcome, run.Err = CouldNotRun, err
	}
	return run
}

// steps boots the pair and does what the file says, recording what it
// saw in o. An error means the run could not run at all; a guest that
// crashes or stops answering half-way only stops it (o.Stopped). booted
// says the guests came up.
func (r *Runner) steps(ctx context.Context, b *Build, n int, pair Pair, o *Observations) (booted bool, err error) {
	r.progressf("run %d: booting the server and the client (%s)", n, b.Kernel.Release)
	if err := pair.Boot(ctx); err != nil {
		// A kernel that crashes while booting (Layer 4.5 built in) may
		// be the bug itself.
		var ge *vm.GuestError
		if !errors.As(err, &ge) || len(ge.Crashes) == 0 {
			return false, err
		}
		for _, title := range ge.Crashes {
			o.Crashes[ge.Guest] = append(o.Crashes[ge.Guest], console.Report{Title: title})
		}
		o.Stopped = fmt.Sprintf("the %s's kernel crashed while it booted: %v", ge.Guest, err)
		return false, nil
	}
	f := r.File
	for _, g := range []string{Server, Client} {
		for _, c := range f.Guest(g).Files {
			data, err := r.Input(g, c)
			if err != nil {
				return true, err
			}
			mode := os.FileMode(0o644)
			if c.Executable {
				mode = 0o755
			}
			if err := pair.Guest(g).WriteFile(ctx, c.To, data, mode); err != nil {
				return true, fmt.Errorf("copy %s into %s:%s: %w", c.From, g, c.To, err)
			}
		}
	}
	if err := r.checkPrograms(ctx, pair); err != nil {
		return true, err
	}
	if !b.Kernel.Layer45Builtin {
		for _, g := range []string{Server, Client} {
			if err := pair.Guest(g).Load(ctx, guest.CoreModule, ""); err != nil {
				return true, fmt.Errorf("load Layer 4.5's core into the %s: %w", g, err)
			}
		}
	}
	for _, g := range []string{Server, Client} {
		for _, m := range f.Guest(g).Modules {
			params := paramString(m.Params)
			r.progressf("run %d: %s: load %s %s", n, g, m.Name, params)
			if err := pair.Guest(g).Load(ctx, m.Name, params); err != nil {
				if crashed(ctx, pair.Guest(g), err) {
					o.Stopped = fmt.Sprintf("loading %s into the %s crashed its kernel: %v", m.Name, g, err)
					return true, nil
				}
				return true, fmt.Errorf("%s:%d: the %s refused module %s %s: %w", f.Name, m.Line, g, m.Name, params, err)
			}
		}
	}
	type bg struct {
		step *Step
		proc Process
	}
	var procs []bg
	for i := 0; i < len(f.Steps) && o.Stopped == ""; i++ {
		s := &f.Steps[i]
		g := pair.Guest(s.Guest)
		if s.Sleep > 0 {
			r.progressf("run %d: step %s: sleep %s", n, s.Name, vm.Scale(s.Sleep))
			select {
			case <-time.After(vm.Scale(s.Sleep)):
			case <-ctx.Done():
				return true, ctx.Err()
			}
			continue
		}
		if s.Background {
			r.progressf("run %d: step %s: start on the %s: %s", n, s.Name, s.Guest, strings.Join(s.Run, " "))
			p, err := g.Spawn(ctx, s.Run)
			if err != nil {
				o.Stopped = fmt.Sprintf("step %s: %v", s.Name, err)
				continue
			}
			procs = append(procs, bg{s, p})
			if s.Listening != "" {
				if err := r.waitListening(ctx, g, s, p, o); err != nil {
					return true, err
				}
			}
			continue
		}
		r.progressf("run %d: step %s: run on the %s: %s", n, s.Name, s.Guest, strings.Join(s.Run, " "))
		res, err := g.Exec(ctx, agent.Cmd{Argv: s.Run, Timeout: vm.Scale(s.Timeout)})
		if err != nil {
			o.Stopped = fmt.Sprintf("step %s: %v", s.Name, err)
			continue
		}
		o.Results[s.Name] = res
		r.progressf("run %d: step %s: %s in %.1fs", n, s.Name, ended(res), res.Duration.Seconds())
	}
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if _, done := o.Results[p.step.Name]; done {
			continue
		}
		if res, err := p.proc.Stop(ctx); err == nil {
			o.Results[p.step.Name] = res
		}
	}
	if ctx.Err() != nil {
		return true, ctx.Err()
	}
	return true, nil
}

// crashed says whether a refused load was the guest's kernel crashing:
// its report may reach the console a moment after the refusal.
func crashed(ctx context.Context, g Guest, err error) bool {
	var ce *vm.CrashError
	if errors.As(err, &ce) {
		return true
	}
	deadline := time.Now().Add(vm.Scale(3 * time.Second))
	for len(g.Crashes()) == 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	return len(g.Crashes()) > 0
}

// checkPrograms makes sure every program the steps run is in its guest,
// before anything is loaded: a missing one is a mistake in the file.
func (r *Runner) checkPrograms(ctx context.Context, pair Pair) error {
	var errs []error
	seen := map[string]bool{}
	for i, s := range r.File.Steps {
		if len(s.Run) == 0 || seen[s.Guest+"\x00"+s.Run[0]] {
			continue
		}
		seen[s.Guest+"\x00"+s.Run[0]] = true
		res, err := pair.Guest(s.Guest).Exec(ctx, agent.Cmd{Argv: []string{"/bin/sh", "-c", `command -v "$1"`, "sh", s.Run[0]}})
		if err != nil {
			return fmt.Errorf("look for %s in the %s: %w", s.Run[0], s.Guest, err)
		}
		if res.ExitCode != 0 {
			errs = append(errs, &FileError{File: r.File.Name, Line: s.Line, Field: at{"steps", i, "run"}.String(),
				Msg: fmt.Sprintf("%q is not in the %s's image (it has busybox's applets, dig, dnsmasq, l45net and l45ctl; copy a static program in with files:)", s.Run[0], s.Guest)})
		}
	}
	return errors.Join(errs...)
}

// waitListening waits until a background step's program has bound its
// port; one that never does is stopped, and what it said is the error.
func (r *Runner) waitListening(ctx context.Context, g Guest, s *Step, p Process, o *Observations) error {
	proto, portText, _ := strings.Cut(s.Listening, "/")
	port, _ := strconv.Atoi(portText)
	limit := vm.Scale(30 * time.Second)
	deadline := time.Now().Add(limit)
	for {
		ok, err := g.Listening(ctx, proto, port)
		if err != nil {
			o.Stopped = fmt.Sprintf("step %s: %v", s.Name, err)
			return nil
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	msg := fmt.Sprintf("%s:%d: step %s: %s did not listen on %s within %s", r.File.Name, s.Line, s.Name, s.Run[0], s.Listening, limit)
	if res, err := p.Stop(ctx); err == nil {
		o.Results[s.Name] = res
		msg += fmt.Sprintf(" (%s; stderr: %s)", ended(res), strings.TrimSpace(string(res.Stderr)))
	}
	return errors.New(msg)
}

// paramString renders parameters as insmod takes them, in a stable order.
func paramString(params map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(params)) {
		v := params[k]
		if strings.ContainsAny(v, " \t") {
			v = `"` + v + `"`
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}
