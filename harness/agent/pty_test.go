package agent

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"layer45/vmimages/agent/server"
)

// session is a program on a terminal and all it printed so far.
type session struct {
	t   *testing.T
	p   *Pty
	out string
	pos int // where the last match ended
}

// expect types input, then reads until want matches the output after the
// last match, failing the test after 10s.
func (s *session) expect(input, want string) string {
	s.t.Helper()
	ctx := ctxT(s.t, 15*time.Second)
	if input != "" {
		n, err := s.p.Write(ctx, []byte(input))
		if err != nil || n != len(input) {
			s.t.Fatalf("Write(%q) = %d, %v", input, n, err)
		}
	}
	re := regexp.MustCompile(want)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if loc := re.FindStringIndex(s.out[s.pos:]); loc != nil {
			got := s.out[s.pos : s.pos+loc[1]]
			s.pos += loc[1]
			return got
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("after typing %q: no %q in the output:\n%q", input, want, s.out[s.pos:])
		}
		data, res, err := s.p.Read(ctx, 50*time.Millisecond)
		if err != nil || res != nil {
			s.t.Fatalf("Read: %v, ended %+v; output so far:\n%q", err, res, s.out)
		}
		s.out += string(data)
	}
}

// A shell on a real pseudo-terminal of the host, through the real agent
// server: it runs commands, sees its window size change, survives Ctrl-C
// to the program it runs, and its exit status comes back.
func TestPtyShell(t *testing.T) {
	e := start(t, server.Config{})
	ctx := ctxT(t, 30*time.Second)
	p, err := e.c.StartPty(ctx, PtyCmd{Argv: []string{"/bin/sh"}, Env: []string{"PS1=ready> "}, Term: "xterm", Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	s := &session{t: t, p: p}
	s.expect("", "ready> ")
	// Each answer is awaited with the prompt after it: typed before the
	// prompt, a line's echo would come before the prompt. The echo holds
	// the expression, the output its value.
	s.expect("echo $((40+2)) $TERM\n", `\r\n42 xterm\r\nready> `)
	s.expect("stty size; tty\n", `\r\n24 80\r\n/dev/pts/\d+\r\nready> `)
	if err := p.Resize(ctx, 50, 132); err != nil {
		t.Fatal(err)
	}
	s.expect("stty size\n", `\r\n50 132\r\nready> `)

	// Ctrl-C goes to the foreground program, not to the shell.
	s.expect("sleep 100; echo after-sleep $?\n", `after-sleep \$\?\r\n`)
	time.Sleep(200 * time.Millisecond) // let sleep start
	s.expect("\x03", `\^C\r\nready> `)
	s.expect("echo alive-$((1+1))\n", `\r\nalive-2\r\nready> `)
	if strings.Contains(s.out, "after-sleep 0") {
		t.Errorf("sleep was not interrupted:\n%q", s.out)
	}

	if _, err := p.Write(ctx, []byte("exit 3\n")); err != nil {
		t.Fatal(err)
	}
	var res *Result
	for res == nil {
		var err error
		if _, res, err = p.Read(ctx, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if res.ExitCode != 3 || res.Signal != "" || res.Pid != p.Pid {
		t.Errorf("exit: %+v, want status 3 of pid %d", res, p.Pid)
	}
	// The handle is gone with the exit.
	if _, _, err := p.Read(ctx, time.Millisecond); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Read after the exit: %v, want ErrNoProcess", err)
	}
}

// A program on a terminal is in the process table: signal ends it, and
// its terminal is closed with the handle. Pipe programs are not
// terminals.
func TestPtySignalAndMisuse(t *testing.T) {
	e := start(t, server.Config{})
	ctx := ctxT(t, 30*time.Second)
	p, err := e.c.StartPty(ctx, PtyCmd{Argv: []string{"/bin/sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Signal(ctx, syscall.SIGTERM)
	if err != nil || res.Signal != "SIGTERM" {
		t.Fatalf("Signal: %+v, %v", res, err)
	}
	if _, err := p.Write(ctx, []byte("x")); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Write after Signal: %v, want ErrNoProcess", err)
	}

	bg, err := e.c.Start(ctx, Cmd{Argv: []string{"/bin/sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	defer bg.Stop(ctx)
	var ae *AgentError
	if _, _, err := (&Pty{bg}).Read(ctx, time.Millisecond); !errors.As(err, &ae) || !strings.Contains(ae.Message, "not on a terminal") {
		t.Errorf("Read of a pipe program: %v", err)
	}
	if err := p.Resize(ctx, 0, 80); err == nil {
		t.Error("Resize to 0 rows succeeded")
	}
	if _, err := e.c.StartPty(ctx, PtyCmd{Argv: []string{"no-such-program"}}); err == nil {
		t.Error("StartPty of a missing program succeeded")
	}
}

// A program that exits at once after writing: every byte it wrote comes
// before its exit; a background job that keeps the terminal open does not
// hold the exit back.
func TestPtyOutputBeforeExit(t *testing.T) {
	e := start(t, server.Config{})
	ctx := ctxT(t, 30*time.Second)
	p, err := e.c.StartPty(ctx, PtyCmd{Argv: []string{"/bin/sh", "-c", "sleep 5 & i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done; exit 7"}})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for {
		data, res, err := p.Read(ctx, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(data)
		if res != nil {
			if res.ExitCode != 7 {
				t.Errorf("exit %+v, want 7", res)
			}
			break
		}
	}
	if !strings.HasSuffix(out.String(), "line1999\r\n") {
		t.Errorf("output ends %q", out.String()[max(0, out.Len()-40):])
	}
}

// Input typed after the program ended is dropped: the terminal would echo
// it, and the exit would wait for the typing to stop.
func TestPtyInputAfterExit(t *testing.T) {
	e := start(t, server.Config{})
	ctx := ctxT(t, 30*time.Second)
	p, err := e.c.StartPty(ctx, PtyCmd{Argv: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	// Reaped (no /proc entry), and a moment for the server to see it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.Pid)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/bin/true still running after 10s")
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n, err := p.Write(ctx, []byte("typed late\n")); n != 11 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	data, res, err := p.Read(ctx, 50*time.Millisecond)
	if err != nil || res == nil || res.ExitCode != 0 || len(data) > 0 {
		t.Errorf("Read = %q, %+v, %v; want the exit alone", data, res, err)
	}
}
