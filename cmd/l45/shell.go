package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"layer45/harness/agent"
	"layer45/harness/artifacts"
	"layer45/harness/modules"
	"layer45/harness/repro"
	"layer45/harness/shell"
	"layer45/harness/vm"
	"layer45/vmimages/guest"
)

const shellUsage = `usage: l45 shell [--guest client|server] [--console] [--cpus N]
                 [--client-mod 'NAME [PARAM=VALUE...]']... [--server-mod ...]...
                 [-- PROGRAM [ARG...]]

Boots a server (10.0.0.20) and a client (10.0.0.40) on one link with
Layer 4.5 loaded, as the end-to-end suites do (kernel and tree from
$L45_KERNEL and $L45_TREE), loads the customization modules given, then
runs an interactive shell (or PROGRAM) on a terminal in one guest. The
host's terminal is raw meanwhile: line editing, Ctrl-C and Ctrl-Z act in
the guest. Leaving the shell (exit, Ctrl-D) saves each guest's kernel log
and trace buffer, powers both off and prints the evidence folder: kernel
consoles, QEMU command lines, kernel logs, the link's capture (lan.pcap).

  --guest G        client (default) or server
  --console        also show both guests' kernel consoles on stderr as they
                   come; they are always written to the evidence folder live
  --cpus N         vCPUs per guest (default 1)
  --client-mod M   load a customization module of the tree into the client
                   after Layer 4.5's core: 'NAME PARAM=VALUE ...' as insmod
                   takes them (the names and parameters of a repro file's
                   modules), e.g. --client-mod 'tag on_recv=0 protocol=17';
                   repeatable, loaded in order
  --server-mod M   the same for the server

Input that is not a terminal (a pipe) is typed as it comes, its end as
Ctrl-D. Exit status: the guest program's (128+N when signal N ended it),
2 for a bad command line, 255 when l45 shell itself failed (a guest that
did not boot, a module refused, a guest that stopped answering).`

// exitShellFailed is l45 shell's status when it failed itself, as ssh's:
// every other status is the guest program's.
const exitShellFailed = 255

// guestModule is a customization module to load, with its parameters.
type guestModule struct{ name, params string }

// moduleFlag collects --client-mod or --server-mod values.
type moduleFlag []guestModule

func (m *moduleFlag) String() string { return "" }

func (m *moduleFlag) Set(v string) error {
	name, params, _ := strings.Cut(strings.TrimSpace(v), " ")
	if name == "" {
		return errors.New("no module name")
	}
	*m = append(*m, guestModule{name, strings.TrimSpace(params)})
	return nil
}

// shellCmd runs l45 shell and returns its exit status.
func shellCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("l45 shell", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	in := fs.String("guest", repro.Client, "")
	console := fs.Bool("console", false, "")
	cpus := fs.Int("cpus", 1, "")
	mods := map[string]*moduleFlag{repro.Server: {}, repro.Client: {}}
	fs.Var(mods[repro.Client], "client-mod", "")
	fs.Var(mods[repro.Server], "server-mod", "")
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	if err := fs.Parse(args); err != nil {
		misuse("shell", shellUsage, "%v", err)
	}
	switch {
	case *help:
		fmt.Println(shellUsage)
		return 0
	case *in != repro.Client && *in != repro.Server:
		misuse("shell", shellUsage, "--guest %q: client or server", *in)
	case *cpus < 1 || *cpus > 8:
		misuse("shell", shellUsage, "--cpus %d: 1 to 8", *cpus)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		argv = []string{"/bin/sh"}
	}

	s := &shellSession{host: &shell.Host{In: os.Stdin, Out: os.Stdout}, console: *console}
	res, err := s.run(ctx, *in, argv, *cpus, mods)
	if err == nil {
		s.sayf("the %s's %s %s", *in, argv[0], exitText(res))
	}
	s.finish(context.WithoutCancel(ctx))
	if err != nil {
		fmt.Fprintf(os.Stderr, "l45 shell: %v\n", err)
		return exitShellFailed
	}
	return exitStatus(res)
}

// shellSession is a pair of guests and the evidence they leave.
type shellSession struct {
	host    *shell.Host
	console bool
	ev      *artifacts.Dir
	link    *vm.Link
	guests  []*vm.Machine // server, then client
}

// sayf prints one line of l45 shell's own on stderr.
func (s *shellSession) sayf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "l45 shell: "+format+s.host.Newline(), args...)
}

// consoleLine shows a guest's console line on stderr when --console asks.
func (s *shellSession) consoleLine(line string) {
	if s.console {
		fmt.Fprint(os.Stderr, line+s.host.Newline())
	}
}

// run boots the pair, loads Layer 4.5 and the modules, and attaches the
// host's terminal to argv on a terminal in the guest named in.
func (s *shellSession) run(ctx context.Context, in string, argv []string, cpus int, mods map[string]*moduleFlag) (*agent.Result, error) {
	env, err := vm.DefaultEnv(ctx)
	if err != nil {
		return nil, err
	}
	set, err := vm.BuildModules(ctx, env, env.Kernel)
	if err != nil {
		return nil, err
	}
	// A misspelt module is told before minutes of booting.
	for _, g := range []string{repro.Server, repro.Client} {
		for _, m := range *mods[g] {
			if _, err := set.Path(m.name); err != nil {
				return nil, fmt.Errorf("--%s-mod %s: %w", g, m.name, err)
			}
		}
	}
	if s.ev, err = artifacts.New("shell"); err != nil {
		return nil, err
	}
	if s.link, err = vm.OpenLink(s.ev, "lan"); err != nil {
		return nil, err
	}
	s.sayf("booting the server (%s) and the client (%s): %s, %s", repro.ServerIP, repro.ClientIP, env.Kernel.Release, env.AccelNote)
	byName := map[string]*vm.Machine{}
	for _, g := range []struct{ name, ip string }{{repro.Server, repro.ServerIP}, {repro.Client, repro.ClientIP}} {
		m, err := vm.Start(ctx, env, s.ev, s.consoleLine, vm.WithName(g.name), vm.WithNIC(s.link, g.ip+"/24"), vm.WithCPUs(cpus))
		if err != nil {
			return nil, err
		}
		s.guests = append(s.guests, m)
		byName[g.name] = m
		if err := s.load(ctx, m, set, *mods[g.name]); err != nil {
			return nil, err
		}
	}
	s.greet(set)

	cmd := agent.PtyCmd{Argv: argv, Term: s.host.Term(), Env: []string{`PS1=\h:\w\$ `}}
	size := "no size"
	if rows, cols, ok := s.host.Size(); ok {
		cmd.Rows, cmd.Cols = rows, cols
		size = fmt.Sprintf("%dx%d", rows, cols)
	}
	p, err := byName[in].StartPty(ctx, cmd)
	if err != nil {
		return nil, err
	}
	s.sayf("%s: %s on a terminal (%s, TERM=%s); exit or Ctrl-D ends it and powers both guests off", in, strings.Join(argv, " "), size, cmd.Term)
	return s.host.Attach(ctx, p)
}

// load loads Layer 4.5's core (unless built in), then mods, into m.
func (s *shellSession) load(ctx context.Context, m *vm.Machine, set *modules.Set, mods []guestModule) error {
	if !m.Kernel().Layer45Builtin {
		mods = append([]guestModule{{name: guest.CoreModule}}, mods...)
	}
	for _, mod := range mods {
		if err := m.LoadModule(ctx, set, mod.name, mod.params); err != nil {
			return err
		}
		s.sayf("%s: loaded %s %s", m.Name, mod.name, mod.params)
	}
	return nil
}

// greet says where the consoles are and how to reach Layer 4.5.
func (s *shellSession) greet(set *modules.Set) {
	s.sayf("kernel consoles, written as they come (tail -f them; --console shows them here):")
	for _, m := range s.guests {
		fmt.Fprintf(os.Stderr, "  %s\n", s.ev.File(m.Name+".console.txt"))
		if c := m.SnapshotConsole(); c != "" {
			fmt.Fprintf(os.Stderr, "  %s (the %s's boot, before the snapshot it was restored from)\n", c, m.Name)
		}
	}
	var names []string
	for n := range set.KOs {
		if n != guest.CoreModule {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	fmt.Fprintf(os.Stderr, `Layer 4.5's control requests, in the guest (l45ctl is on the PATH):
  l45ctl CUST_REPORT              l45ctl 'TOGGLE ID 0|1 END'
  l45ctl 'PRIORITY ID PRIO END'   l45ctl 'DEPRECATE ID END'
  lsmod, dmesg, rmmod NAME; customization modules load at start: --client-mod/--server-mod 'NAME PARAMS'
  (%s)
`, strings.Join(names, " "))
}

// finish saves what each guest can still tell, powers it off and says
// where the evidence is.
func (s *shellSession) finish(ctx context.Context) {
	if len(s.guests) > 0 {
		s.sayf("saving the kernel logs, powering the guests off")
	}
	for _, m := range s.guests {
		cctx, cancel := context.WithTimeout(ctx, vm.Scale(30*time.Second))
		m.SaveEvidence(cctx)
		cancel()
		m.Close()
		for _, c := range m.Crashes() {
			s.sayf("%s: kernel report: %s", m.Name, c.Title)
		}
	}
	if s.link != nil {
		s.link.Close()
	}
	if s.ev != nil {
		s.sayf("guests powered off; evidence: %s", s.ev.Path())
	}
}

// exitText says how a program ended.
func exitText(r *agent.Result) string {
	if r.Signal != "" {
		return "was killed by " + r.Signal
	}
	return fmt.Sprintf("exited with status %d", r.ExitCode)
}

// exitStatus is a program's end as a shell reports it: 128+N for signal N.
func exitStatus(r *agent.Result) int {
	if r.Signal != "" {
		return 128 + int(unix.SignalNum(r.Signal))
	}
	return r.ExitCode
}
