package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/kmsg"
	"layer45/vmimages/agent/proto"
	"layer45/vmimages/agent/server"
)

// fakeKernel stands in for finit_module, delete_module, /dev/kmsg and
// reboot(2), none of which a host test may touch.
type fakeKernel struct {
	mu      sync.Mutex
	log     []string // raw kmsg records
	seq     uint64
	load    func(path, params string) (error, []string)
	unload  func(name string, flags int) (error, []string)
	calls   []string
	reboots []int
	syncs   int
}

func (k *fakeKernel) printk(level int, text string) {
	k.log = append(k.log, fmt.Sprintf("%d,%d,%d,-;%s\n", level, k.seq, 1000000+k.seq*1000, text))
	k.seq++
}

func (k *fakeKernel) LoadModule(path, params string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, "insmod "+path+" "+params)
	if k.load == nil {
		return nil
	}
	err, lines := k.load(path, params)
	for _, l := range lines {
		k.printk(4, l)
	}
	return err
}

func (k *fakeKernel) UnloadModule(name string, flags int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, fmt.Sprintf("rmmod %s %#x", name, flags))
	if k.unload == nil {
		return nil
	}
	err, lines := k.unload(name, flags)
	for _, l := range lines {
		k.printk(6, l)
	}
	return err
}

type sliceSource struct {
	k   *fakeKernel
	pos int
}

func (s *sliceSource) Next() (string, error) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	if s.pos >= len(s.k.log) {
		return "", io.EOF
	}
	s.pos++
	return s.k.log[s.pos-1], nil
}
func (s *sliceSource) Close() error { return nil }

func (k *fakeKernel) OpenLog(fromEnd bool) (kmsg.Source, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := &sliceSource{k: k}
	if fromEnd {
		s.pos = len(k.log)
	}
	return s, nil
}

func (k *fakeKernel) Sync() {
	k.mu.Lock()
	k.syncs++
	k.mu.Unlock()
}

func (k *fakeKernel) Reboot(cmd int) error {
	k.mu.Lock()
	k.reboots = append(k.reboots, cmd)
	k.mu.Unlock()
	return nil
}

// logBuf collects the server's console lines (t.Logf must not be called
// after a test ends, and servers outlive tests a little).
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

type env struct {
	c    *Client
	k    *fakeKernel
	log  *logBuf
	conn net.Conn // the agent's end
}

var testHello = proto.Hello{AgentVersion: "test", Release: "6.1.0-56-amd64", Uptime: 2900 * time.Millisecond,
	Boot: []proto.BootStep{{Step: "mount", Target: "/proc", OK: true}, {Step: "module", Target: "/x.ko", Errno: 17, ErrnoName: "EEXIST", Error: "file exists"}}}

// start runs the real agent server over net.Pipe and dials it.
func start(t *testing.T, cfg server.Config, opts ...Option) *env {
	t.Helper()
	e := &env{k: &fakeKernel{}, log: &logBuf{}}
	if cfg.Kernel == nil {
		cfg.Kernel = e.k
	}
	cfg.Hello = func() proto.Hello { return testHello }
	cfg.Logf = e.log.logf
	if cfg.RebootDelay == 0 {
		cfg.RebootDelay = time.Millisecond
	}
	srv := server.New(cfg)
	host, guest := net.Pipe()
	e.conn = guest
	served := make(chan error, 1)
	go func() { served <- srv.Serve(guest) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, host, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	e.c = c
	t.Cleanup(func() {
		c.Close()
		guest.Close()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("server did not stop")
		}
		if t.Failed() {
			t.Logf("agent console:\n%s", e.log)
		}
	})
	return e
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestHelloAndPing(t *testing.T) {
	e := start(t, server.Config{})
	h := e.c.Hello()
	if h.Release != "6.1.0-56-amd64" || h.Protocol != proto.Version || len(h.Boot) != 2 || h.Uptime != 2900*time.Millisecond {
		t.Errorf("Hello() = %+v", h)
	}
	if s := h.Boot[1].String(); s != "module /x.ko: FAILED: file exists (EEXIST, errno 17)" {
		t.Errorf("BootStep.String() = %q", s)
	}
	if err := e.c.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestRun(t *testing.T) {
	e := start(t, server.Config{})
	tmp := t.TempDir()
	tests := []struct {
		name       string
		cmd        Cmd
		wantExit   int
		wantOut    string
		wantErr    string // substring of Result.Err()
		wantSignal string
		timedOut   bool
	}{
		{name: "true", cmd: Cmd{Argv: []string{"/bin/true"}}},
		{name: "path lookup", cmd: Cmd{Argv: []string{"true"}}},
		{name: "exit code and streams", cmd: Cmd{Argv: []string{"/bin/sh", "-c", "echo; echo out; echo oops >&2; exit 3"}},
			wantExit: 3, wantOut: "\nout\n", wantErr: `["/bin/sh" "-c" "echo; echo out; echo oops >&2; exit 3"]: exit code 3; stderr: oops`},
		{name: "stdin", cmd: Cmd{Argv: []string{"cat"}, Stdin: []byte("fed through stdin\x00\xff")}, wantOut: "fed through stdin\x00\xff"},
		{name: "env added to defaults", cmd: Cmd{Argv: []string{"/bin/sh", "-c", `echo "$FOO:$HOME:${PATH%%:*}"`}, Env: []string{"FOO=bar", "HOME=/root"}},
			wantOut: "bar:/root:/usr/local/sbin\n"},
		{name: "dir", cmd: Cmd{Argv: []string{"pwd"}, Dir: tmp}, wantOut: tmp + "\n"},
		{name: "default dir", cmd: Cmd{Argv: []string{"pwd"}}, wantOut: "/\n"},
		{name: "killed by signal", cmd: Cmd{Argv: []string{"/bin/sh", "-c", "kill -TERM $$"}},
			wantExit: -1, wantSignal: "SIGTERM", wantErr: "killed by SIGTERM"},
		{name: "timeout kills the group", cmd: Cmd{Argv: []string{"/bin/sh", "-c", "sleep 30 & sleep 30; echo never"}, Timeout: 300 * time.Millisecond},
			wantExit: -1, wantSignal: "SIGKILL", timedOut: true, wantErr: "timed out after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r, err := e.c.Run(ctxT(t, 10*time.Second), tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if r.ExitCode != tt.wantExit || r.Signal != tt.wantSignal || r.TimedOut != tt.timedOut {
				t.Errorf("exit %d signal %q timed out %v; want %d %q %v (stderr %q)", r.ExitCode, r.Signal, r.TimedOut, tt.wantExit, tt.wantSignal, tt.timedOut, r.Stderr)
			}
			if tt.wantOut != "" && string(r.Stdout) != tt.wantOut {
				t.Errorf("stdout = %q, want %q", r.Stdout, tt.wantOut)
			}
			err = r.Err()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Err() = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Err() = %v, want it to contain %q", err, tt.wantErr)
			}
			if tt.timedOut && time.Since(start) > 5*time.Second {
				t.Errorf("timed-out run took %v: the group was not killed", time.Since(start))
			}
		})
	}
}

func TestRunCannotStart(t *testing.T) {
	e := start(t, server.Config{})
	ctx := ctxT(t, 5*time.Second)
	for _, argv := range [][]string{{"no-such-program-l45"}, {"/no/such/file"}, {}, {"/"}} {
		_, err := e.c.Run(ctx, Cmd{Argv: argv})
		var ae *AgentError
		if !errors.As(err, &ae) {
			t.Errorf("Run(%q) error = %v, want an *AgentError", argv, err)
			continue
		}
		t.Logf("Run(%q): %v", argv, err)
	}
	_, err := e.c.Run(ctx, Cmd{Argv: []string{"/no/such/file"}})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Run(missing file) error %v does not match fs.ErrNotExist", err)
	}
	// The agent keeps serving.
	if err := e.c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRunTimeoutFromContext(t *testing.T) {
	e := start(t, server.Config{})
	// No Cmd.Timeout: the agent is told to kill the program shortly before
	// ctx's deadline, so the client gets a result and stays usable.
	r, err := e.c.Run(ctxT(t, 3*time.Second), Cmd{Argv: []string{"sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.TimedOut || r.Signal != "SIGKILL" {
		t.Errorf("result %+v, want timed out by SIGKILL", r)
	}
	if err := e.c.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestOutputTruncated(t *testing.T) {
	tests := []struct {
		name string
		cfg  server.Config
		size int
		cap  int
	}{
		{"default cap", server.Config{}, 6 << 20, proto.MaxOutput},
		{"small cap", server.Config{MaxOutput: 1000}, 5000, 1000},
		{"under the cap", server.Config{MaxOutput: 1000}, 999, 999},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, tt.cfg)
			r, err := e.c.Run(ctxT(t, 20*time.Second), Cmd{Argv: []string{"/bin/sh", "-c", fmt.Sprintf("yes | head -c %d; yes e | head -c %d >&2", tt.size, tt.size)}})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Stdout) != tt.cap || len(r.Stderr) != tt.cap || r.Truncated != (tt.size > tt.cap) || r.ExitCode != 0 {
				t.Errorf("stdout %d, stderr %d bytes, truncated %v, exit %d; want %d each, truncated %v",
					len(r.Stdout), len(r.Stderr), r.Truncated, r.ExitCode, tt.cap, tt.size > tt.cap)
			}
			if !bytes.HasPrefix(r.Stdout, []byte("y\ny\n")) {
				t.Errorf("stdout starts %q", r.Stdout[:min(10, len(r.Stdout))])
			}
		})
	}
}

func TestBackground(t *testing.T) {
	e := start(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)

	// A program that ends by itself.
	p, err := e.c.Start(ctx, Cmd{Argv: []string{"/bin/sh", "-c", "read x; echo got $x; exit 4"}, Stdin: []byte("it\n")})
	if err != nil {
		t.Fatal(err)
	}
	if p.ID == 0 || p.Pid == 0 {
		t.Errorf("process %+v", p)
	}
	r, err := p.Wait(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitCode != 4 || string(r.Stdout) != "got it\n" {
		t.Errorf("wait: exit %d stdout %q", r.ExitCode, r.Stdout)
	}
	// The handle is gone once the result was delivered.
	if _, err := p.Wait(ctx, time.Second); !errors.Is(err, ErrNoProcess) {
		t.Errorf("second Wait: %v, want ErrNoProcess", err)
	}

	// A program that must be stopped; calls go on while it runs.
	p, err = e.c.Start(ctx, Cmd{Argv: []string{"/bin/sh", "-c", "echo started; exec sleep 30"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(ctx, 200*time.Millisecond); !errors.Is(err, ErrStillRunning) {
		t.Fatalf("Wait on a running program: %v, want ErrStillRunning", err)
	}
	if r, err := e.c.Run(ctx, Cmd{Argv: []string{"true"}}); err != nil || r.ExitCode != 0 {
		t.Fatalf("Run while a background program runs: %v %v", r, err)
	}
	r, err = p.Signal(ctx, syscall.SIGTERM)
	if err != nil {
		t.Fatal(err)
	}
	if r.Signal != "SIGTERM" || r.ExitCode != -1 || string(r.Stdout) != "started\n" {
		t.Errorf("after SIGTERM: %+v", r)
	}

	// A program that ignores SIGTERM: Stop escalates to SIGKILL.
	p, err = e.c.Start(ctx, Cmd{Argv: []string{"/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the trap be set
	r, err = p.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Signal != "SIGKILL" {
		t.Errorf("Stop of a program ignoring SIGTERM: %+v", r)
	}

	// A background program's own timeout.
	p, err = e.c.Start(ctx, Cmd{Argv: []string{"sleep", "30"}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r, err = p.Wait(ctx, 0)
	if err != nil || !r.TimedOut {
		t.Errorf("Wait on a timed-out program: %+v, %v", r, err)
	}
}

func TestFiles(t *testing.T) {
	e := start(t, server.Config{MaxFile: 1 << 20})
	ctx := ctxT(t, 10*time.Second)
	dir := t.TempDir()
	binary := make([]byte, 300<<10)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	tests := []struct {
		name string
		path string
		data []byte
		mode os.FileMode
		want os.FileMode
	}{
		{"new file in new folders", filepath.Join(dir, "a/b/c/file"), []byte("hello\n"), 0o600, 0o600},
		{"default mode", filepath.Join(dir, "plain"), []byte("x"), 0, 0o644},
		{"binary, executable", filepath.Join(dir, "bin/tool"), binary, 0o755, 0o755},
		{"empty", filepath.Join(dir, "empty"), nil, 0o644, 0o644},
		{"overwrite changes mode", filepath.Join(dir, "plain"), []byte("second"), 0o640, 0o640},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.c.PutFile(ctx, tt.path, tt.data, tt.mode); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tt.want {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tt.want)
			}
			got, err := e.c.ReadFile(ctx, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("read back %d bytes, want %d", len(got), len(tt.data))
			}
		})
	}

	// procfs files have a stat size of 0 and still have content.
	status, err := e.c.ReadFile(ctx, "/proc/self/status")
	if err != nil || !bytes.Contains(status, []byte("Pid:")) {
		t.Errorf("ReadFile(/proc/self/status) = %q, %v", status, err)
	}

	// Errors carry errno.
	if _, err := e.c.ReadFile(ctx, filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("ReadFile(missing) = %v, want ENOENT", err)
	}
	if _, err := e.c.ReadFile(ctx, dir); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("ReadFile(dir) = %v, want EISDIR", err)
	}
	if err := e.c.PutFile(ctx, filepath.Join(dir, "plain", "under-a-file"), nil, 0); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("PutFile under a file = %v, want ENOTDIR", err)
	}

	// Larger than the agent's limit: the beginning and ErrTruncated.
	big := bytes.Repeat([]byte("0123456789abcdef"), 100<<10) // 1.6 MB
	bigPath := filepath.Join(dir, "big")
	if err := os.WriteFile(bigPath, big, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := e.c.ReadFile(ctx, bigPath)
	if !errors.Is(err, ErrTruncated) || len(got) != 1<<20 || !bytes.Equal(got, big[:1<<20]) {
		t.Errorf("ReadFile(big) = %d bytes, %v", len(got), err)
	}
	if err := e.c.PutFile(ctx, bigPath, big, 0); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("PutFile over the agent's limit = %v", err)
	}
}

func TestModules(t *testing.T) {
	e := start(t, server.Config{})
	ctx := ctxT(t, 5*time.Second)
	e.k.load = func(path, params string) (error, []string) {
		switch path {
		case "/lib/modules/good.ko":
			return nil, []string{"good: loading out-of-tree module taints kernel.", "good: hello " + params}
		case "/lib/modules/bad.ko":
			return syscall.EINVAL, []string{"bad: Unknown symbol layer4_5_register (err -2)"}
		case "/lib/modules/loaded.ko":
			return syscall.EEXIST, nil
		}
		return syscall.ENOENT, nil
	}
	e.k.unload = func(name string, flags int) (error, []string) {
		if name == "busy" {
			return syscall.EWOULDBLOCK, nil
		}
		return nil, []string{name + ": bye"}
	}
	// Something logged before the call is not part of its log.
	e.k.mu.Lock()
	e.k.printk(6, "earlier line")
	e.k.mu.Unlock()

	r, err := e.c.LoadModule(ctx, "/lib/modules/good.ko", "debug=1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.Log, "|") != "good: loading out-of-tree module taints kernel.|good: hello debug=1" || r.Module != "/lib/modules/good.ko" {
		t.Errorf("LoadModule = %+v", r)
	}

	tests := []struct {
		name    string
		do      func() error
		errno   syscall.Errno
		message string
	}{
		{"refused load", func() error { _, err := e.c.LoadModule(ctx, "/lib/modules/bad.ko", ""); return err },
			syscall.EINVAL, "insmod /lib/modules/bad.ko: invalid argument (EINVAL); kernel said: bad: Unknown symbol layer4_5_register (err -2)"},
		{"already loaded", func() error { _, err := e.c.LoadModule(ctx, "/lib/modules/loaded.ko", ""); return err },
			syscall.EEXIST, "insmod /lib/modules/loaded.ko: file exists (EEXIST)"},
		{"busy unload", func() error { _, err := e.c.UnloadModule(ctx, "busy"); return err },
			syscall.EWOULDBLOCK, "rmmod busy: resource temporarily unavailable (EAGAIN)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			var me *ModuleError
			if !errors.As(err, &me) {
				t.Fatalf("error %v (%T), want *ModuleError", err, err)
			}
			if !errors.Is(err, tt.errno) || me.Errno != tt.errno {
				t.Errorf("errno %v, want %v", me.Errno, tt.errno)
			}
			if err.Error() != tt.message {
				t.Errorf("message\n got %q\nwant %q", err.Error(), tt.message)
			}
		})
	}

	r, err = e.c.UnloadModule(ctx, "good", Force())
	if err != nil || len(r.Log) != 1 || r.Log[0] != "good: bye" {
		t.Errorf("UnloadModule = %+v, %v", r, err)
	}
	want := []string{
		"insmod /lib/modules/good.ko debug=1",
		"insmod /lib/modules/bad.ko ",
		"insmod /lib/modules/loaded.ko ",
		fmt.Sprintf("rmmod busy %#x", unix.O_NONBLOCK),
		fmt.Sprintf("rmmod good %#x", unix.O_NONBLOCK|unix.O_TRUNC),
	}
	if got := strings.Join(e.k.calls, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("kernel calls:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if !strings.Contains(e.log.String(), "insmod /lib/modules/bad.ko: invalid argument (EINVAL)") {
		t.Errorf("console does not name the refused load:\n%s", e.log)
	}
}

func TestKernelLog(t *testing.T) {
	e := start(t, server.Config{MaxLogRecords: 3})
	ctx := ctxT(t, 5*time.Second)
	e.k.mu.Lock()
	for i := 0; i < 7; i++ {
		e.k.printk(i%8, fmt.Sprintf("line %d", i))
	}
	e.k.log = append(e.k.log, "not a record\n")
	e.k.mu.Unlock()

	recs, cursor, err := e.c.KernelLog(ctx, 0) // 3 per reply: the client pages
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 7 || cursor != 7 || recs[6].Text != "line 6" || recs[3].Level != 3 || recs[2].Usec != 1002000 {
		t.Errorf("KernelLog(0) = %v, cursor %d", recs, cursor)
	}
	e.k.mu.Lock()
	e.k.printk(2, "new line")
	e.k.mu.Unlock()
	recs, cursor, err = e.c.KernelLog(ctx, cursor)
	if err != nil || len(recs) != 1 || recs[0].Text != "new line" || cursor != 8 {
		t.Errorf("KernelLog(7) = %v, %d, %v", recs, cursor, err)
	}
	recs, cursor, err = e.c.KernelLog(ctx, cursor)
	if err != nil || len(recs) != 0 || cursor != 8 {
		t.Errorf("KernelLog(8) = %v, %d, %v", recs, cursor, err)
	}
}

func TestSyncPowerOff(t *testing.T) {
	e := start(t, server.Config{})
	ctx := ctxT(t, 5*time.Second)
	if err := e.c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.c.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	// The reboot happens after the reply; wait for the fake to see it.
	deadline := time.Now().Add(2 * time.Second)
	for {
		e.k.mu.Lock()
		n := len(e.k.reboots)
		e.k.mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.k.mu.Lock()
	got := fmt.Sprint(e.k.reboots)
	syncs := e.k.syncs
	e.k.mu.Unlock()
	if want := fmt.Sprint([]int{unix.LINUX_REBOOT_CMD_POWER_OFF}); got != want {
		t.Errorf("reboot(2) calls %s, want %s", got, want)
	}
	if syncs < 2 {
		t.Errorf("%d syncs, want at least 2", syncs)
	}
	if err := e.c.Ping(ctx); !errors.Is(err, ErrPoweredOff) || !errors.Is(err, ErrBroken) {
		t.Errorf("Ping after PowerOff = %v", err)
	}
}

// silentAgent says hello, then reads requests and never answers.
func silentAgent(t *testing.T, conn net.Conn, hello bool) {
	t.Helper()
	go func() {
		if hello {
			fmt.Fprintf(conn, `{"id":0,"verb":"hello","result":{"protocol":1,"release":"silent"}}`+"\n")
		}
		io.Copy(io.Discard, conn)
	}()
}

func TestContextTimeoutPoisons(t *testing.T) {
	host, guest := net.Pipe()
	defer guest.Close()
	silentAgent(t, guest, true)
	c, err := Dial(ctxT(t, 5*time.Second), host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Hello().Release != "silent" {
		t.Errorf("hello %+v", c.Hello())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Run(ctx, Cmd{Argv: []string{"true"}})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "agent run") {
		t.Fatalf("Run on a silent agent = %v, want DeadlineExceeded naming run", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	start = time.Now()
	err = c.Ping(ctxT(t, 5*time.Second))
	if !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), "agent ping") || !strings.Contains(err.Error(), "agent run") {
		t.Errorf("Ping on a poisoned client = %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("poisoned call took %v, want fast failure", d)
	}
}

func TestContextTimeoutWhileSending(t *testing.T) {
	// An agent that does not even read: the write itself must honour ctx.
	host, guest := net.Pipe()
	defer guest.Close()
	go fmt.Fprintf(guest, `{"id":0,"verb":"hello","result":{"protocol":1}}`+"\n")
	c, err := Dial(ctxT(t, 5*time.Second), host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "ping") {
		t.Errorf("Ping to an agent that does not read = %v", err)
	}
}

func TestDialErrors(t *testing.T) {
	t.Run("no hello", func(t *testing.T) {
		host, guest := net.Pipe()
		defer guest.Close()
		silentAgent(t, guest, false)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := Dial(ctx, host, WithHelloRetry(50*time.Millisecond))
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "hello") {
			t.Errorf("Dial = %v", err)
		}
	})
	t.Run("connection closed", func(t *testing.T) {
		host, guest := net.Pipe()
		guest.Close()
		_, err := Dial(ctxT(t, time.Second), host)
		if err == nil || !strings.Contains(err.Error(), "lost") {
			t.Errorf("Dial = %v", err)
		}
	})
	t.Run("hello asked again", func(t *testing.T) {
		// The agent's first hello was missed; Dial asks for it.
		host, guest := net.Pipe()
		defer guest.Close()
		go func() {
			fr := proto.NewFrameReader(guest, 0)
			for {
				line, err := fr.Next()
				if err != nil {
					return
				}
				if bytes.Contains(line, []byte(`"verb":"hello"`)) {
					var req proto.Request
					if json := line; len(json) > 0 {
						fmt.Sscanf(string(line), `{"id":%d`, &req.ID)
					}
					fmt.Fprintf(guest, `{"id":%d,"verb":"hello","result":{"protocol":1,"release":"asked"}}`+"\n", req.ID)
				}
			}
		}()
		c, err := Dial(ctxT(t, 2*time.Second), host, WithHelloRetry(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.Hello().Release != "asked" {
			t.Errorf("hello %+v", c.Hello())
		}
	})
}

func TestFrameErrorsThroughClient(t *testing.T) {
	// A request larger than the agent's frame limit gets an error reply
	// (id 0), which the client attributes to the call in flight; the agent
	// and the client go on.
	e := start(t, server.Config{MaxFrame: 4096})
	ctx := ctxT(t, 5*time.Second)
	err := e.c.PutFile(ctx, filepath.Join(t.TempDir(), "f"), make([]byte, 10000), 0)
	var ae *AgentError
	if !errors.As(err, &ae) || ae.Code != proto.CodeFrameTooLarge {
		t.Fatalf("PutFile of a too-large frame = %v", err)
	}
	if err := e.c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestTranscript(t *testing.T) {
	var mu sync.Mutex
	var frames []string
	var w bytes.Buffer
	e := start(t, server.Config{}, WithTranscript(func(dir string, frame []byte) {
		mu.Lock()
		frames = append(frames, dir+" "+string(frame))
		mu.Unlock()
	}))
	if err := e.c.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := strings.Join(frames, "\n")
	mu.Unlock()
	want := `recv {"id":0,"verb":"hello","result":{"protocol":1,"agent_version":"test","release":"6.1.0-56-amd64","uptime":2900000000,"boot":[{"step":"mount","target":"/proc","ok":true},{"step":"module","target":"/x.ko","ok":false,"error":"file exists","errno":17,"errno_name":"EEXIST"}]}}
send {"id":1,"verb":"ping"}
recv {"id":1,"verb":"ping"}`
	if got != want {
		t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
	}

	e2 := start(t, server.Config{}, WithTranscriptWriter(&w))
	if err := e2.c.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	e2.c.Close()
	if lines := strings.Split(strings.TrimSpace(w.String()), "\n"); len(lines) != 3 || !strings.Contains(lines[1], ` send {"id":1,"verb":"ping"}`) {
		t.Errorf("transcript writer:\n%s", w.String())
	}
}

func TestAgentRestart(t *testing.T) {
	// A new agent says hello on the same stream under a running call:
	// the call fails with ErrAgentRestarted and the client goes on.
	host, guest := net.Pipe()
	defer guest.Close()
	go func() {
		fr := proto.NewFrameReader(guest, 0)
		fmt.Fprintf(guest, `{"id":0,"verb":"hello","result":{"protocol":1,"uptime":1}}`+"\n")
		for {
			line, err := fr.Next()
			if err != nil {
				return
			}
			var id uint64
			fmt.Sscanf(string(line), `{"id":%d`, &id)
			switch {
			case bytes.Contains(line, []byte(`"run"`)):
				// The guest reboots under a running command.
				fmt.Fprintf(guest, `{"id":0,"verb":"hello","result":{"protocol":1,"uptime":3}}`+"\n")
			default:
				fmt.Fprintf(guest, `{"id":%d,"verb":"ping"}`+"\n", id)
			}
		}
	}()
	c, err := Dial(ctxT(t, 2*time.Second), host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t, 5*time.Second)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx, Cmd{Argv: []string{"x"}}); !errors.Is(err, ErrAgentRestarted) {
		t.Errorf("Run during a restart = %v", err)
	}
	if c.Hello().Uptime != 3 {
		t.Errorf("Hello after restart %+v", c.Hello())
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	e := start(t, server.Config{})
	if err := e.c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Ping(ctxT(t, time.Second)); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close = %v", err)
	}
}

func TestBudget(t *testing.T) {
	bg := context.Background()
	if got := budget(bg, 0); got != 0 {
		t.Errorf("no deadline, no timeout: %v", got)
	}
	if got := budget(bg, time.Second); got != time.Second {
		t.Errorf("no deadline: %v", got)
	}
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if got := budget(ctx, 0); got < 8*time.Second || got > 9*time.Second {
		t.Errorf("10s deadline: %v", got)
	}
	if got := budget(ctx, time.Second); got != time.Second {
		t.Errorf("10s deadline, 1s timeout: %v", got)
	}
	if got := budget(ctx, time.Minute); got > 9*time.Second {
		t.Errorf("10s deadline, 1m timeout: %v", got)
	}
}

func TestExitErrorTail(t *testing.T) {
	r := &Result{Argv: []string{"dig"}, ExitCode: 9, Stderr: []byte(strings.Repeat("x", 2000) + "the end\n")}
	msg := r.Err().Error()
	if !strings.HasPrefix(msg, `["dig"]: exit code 9; stderr: ...`) || !strings.HasSuffix(msg, "the end") || len(msg) > 600 {
		t.Errorf("Err() = %q", msg)
	}
	var ee *ExitError
	if !errors.As(r.Err(), &ee) || ee.Result != r {
		t.Error("Err() is not an *ExitError")
	}
}
