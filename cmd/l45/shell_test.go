package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"layer45/harness/agent"
	"layer45/harness/vm"
	"layer45/vmimages/agent/pty"
)

// l45 shell's command line is checked before anything boots.
func TestShellMisuse(t *testing.T) {
	code, out := runL45(t, nil, "shell", "-h")
	if code != 0 || !strings.Contains(out, "--client-mod") {
		t.Errorf("l45 shell -h: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"shell", "--guest", "router"}, {"shell", "--cpus", "0"}, {"shell", "--client-mod", " "}, {"shell", "--bogus"}} {
		if code, out := runL45(t, nil, args...); code != 2 || !strings.Contains(out, "usage: l45 shell") {
			t.Errorf("l45 %v: exit %d, want 2 and the usage\n%s", args, code, out)
		}
	}
}

// Module flags split the name from insmod's parameters; a program's end
// becomes a status as a shell gives it.
func TestShellModulesAndStatus(t *testing.T) {
	var m moduleFlag
	for _, v := range []string{"tag", "  error errno=-1 task_tgid=l45net "} {
		if err := m.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if want := (moduleFlag{{"tag", ""}, {"error", "errno=-1 task_tgid=l45net"}}); !slices.Equal(m, want) {
		t.Errorf("modules %q, want %q", m, want)
	}
	for _, c := range []struct {
		r    agent.Result
		want int
	}{{agent.Result{ExitCode: 3}, 3}, {agent.Result{ExitCode: -1, Signal: "SIGKILL"}, 137}} {
		if got := exitStatus(&c.r); got != c.want {
			t.Errorf("exitStatus(%+v) = %d, want %d", c.r, got, c.want)
		}
	}
}

// transcript collects what l45 writes to its terminal.
type transcript struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (tr *transcript) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.String()
}

// wait polls until re matches the transcript and returns the match; it
// gives up when l45 has ended (done closed) without writing it.
func (tr *transcript) wait(t *testing.T, re *regexp.Regexp, timeout time.Duration, done <-chan struct{}) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(tr.String()); m != nil {
			return m
		}
		select {
		case <-done:
			time.Sleep(200 * time.Millisecond) // the reader's last bytes
			if m := re.FindStringSubmatch(tr.String()); m != nil {
				return m
			}
			t.Fatalf("l45 ended without writing %q; it wrote:\n%s", re, tr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q after %v; l45 wrote:\n%s", re, timeout, tr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// l45 shell as a person runs it, on a terminal: the pair boots, what is
// typed runs in the client's shell, and leaving it restores the terminal,
// powers the guests off and leaves the evidence.
func TestShellOnATerminal(t *testing.T) {
	env := vm.RequireGuests(t)
	master, term, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer term.Close()
	before, err := unix.IoctlGetTermios(int(term.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(l45Bin, "shell")
	cmd.Env = append(os.Environ(), "L45_ARTIFACTS="+t.TempDir(), "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = term, term, term
	// A session of its own with the terminal as its controlling
	// terminal, as a login shell's child would have.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	defer func() {
		select {
		case <-done:
		default: // a failed test: vm stops its guests on SIGTERM
			cmd.Process.Signal(syscall.SIGTERM)
			<-done
		}
	}()
	tr := &transcript{}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			tr.mu.Lock()
			tr.buf.Write(b[:n])
			tr.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()

	tr.wait(t, regexp.MustCompile(`exit or Ctrl-D ends it`), 10*time.Minute, done)
	if _, err := master.WriteString("uname -r; exit\r"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("l45 shell: %v; it wrote:\n%s", waitErr, tr)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("l45 shell still running 5 minutes after exit was typed; it wrote:\n%s", tr)
	}
	// The echo of the line does not hold the release; its output does.
	tr.wait(t, regexp.MustCompile(`\n`+regexp.QuoteMeta(env.Kernel.Release)+`\r?\n`), time.Second, done)
	ev := tr.wait(t, regexp.MustCompile(`evidence: (\S+)`), time.Second, done)[1]
	for _, f := range []string{"server.console.txt", "client.console.txt", "server.dmesg.txt", "client.dmesg.txt", "lan.pcap"} {
		if _, err := os.Stat(filepath.Join(ev, f)); err != nil {
			t.Errorf("evidence: %v", err)
		}
	}
	after, err := unix.IoctlGetTermios(int(term.Fd()), unix.TCGETS)
	if err != nil || *after != *before {
		t.Errorf("terminal settings after l45 shell %+v, want %+v (%v)", after, before, err)
	}
	// Every guest and link of the l45 process named its private
	// directory after the process: none may be left, nor any QEMU
	// using one.
	mark := "l45-vm-" + strconv.Itoa(cmd.Process.Pid) + "-"
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), mark+"*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), mark) {
			t.Errorf("still running: %s", bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}
