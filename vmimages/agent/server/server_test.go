package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"layer45/vmimages/agent/kmsg"
	"layer45/vmimages/agent/proto"
)

type panicKernel struct{ LinuxKernel }

func (panicKernel) LoadModule(path, params string) error { panic("boom in " + path) }
func (panicKernel) OpenLog(bool) (kmsg.Source, error)    { return nil, fmt.Errorf("no kmsg here") }
func (panicKernel) Reboot(int) error                     { return nil }
func (panicKernel) Sync()                                {}

// rawServer serves on one end of a pipe and returns the other end with a
// line reader that has consumed the hello.
func rawServer(t *testing.T, cfg Config) (net.Conn, *bufio.Reader, *[]string) {
	t.Helper()
	var logs []string
	cfg.Kernel = panicKernel{}
	cfg.Logf = func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	s := New(cfg)
	host, guest := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Serve(guest) }()
	t.Cleanup(func() {
		host.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v at EOF, want nil", err)
		}
	})
	host.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReaderSize(host, 1<<20)
	var hello proto.Response
	line, err := r.ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &hello) != nil || hello.Verb != proto.VerbHello || hello.ID != 0 {
		t.Fatalf("first frame %q, %v; want a hello", line, err)
	}
	return host, r, &logs
}

func TestRawFrames(t *testing.T) {
	host, r, logs := rawServer(t, Config{MaxFrame: 1024})
	tests := []struct {
		name     string
		send     string
		wantID   uint64
		wantCode string // "" for success
		wantMsg  string
	}{
		{"ping", `{"id":1,"verb":"ping"}`, 1, "", ""},
		{"not json", `this is not json`, 0, proto.CodeBadFrame, "malformed frame"},
		{"truncated json keeps no id", `{"id":7,"verb":"pi`, 0, proto.CodeBadFrame, "malformed frame"},
		{"wrong type keeps the id", `{"id":8,"verb":42}`, 8, proto.CodeBadFrame, "malformed frame"},
		{"oversized", `{"id":9,"verb":"ping","args":"` + strings.Repeat("A", 5000) + `"}`, 0, proto.CodeFrameTooLarge, "larger than 1024"},
		{"unknown verb", `{"id":10,"verb":"fly"}`, 10, proto.CodeUnknownVerb, `unknown verb "fly"`},
		{"missing args", `{"id":11,"verb":"run"}`, 11, proto.CodeBadArgs, "missing args"},
		{"bad args", `{"id":12,"verb":"run","args":{"argv":"sh"}}`, 12, proto.CodeBadArgs, "bad args"},
		{"bad signal", `{"id":13,"verb":"signal","args":{"handle":99,"signal":"SIGTERM"}}`, 13, proto.CodeNoProcess, "no process with handle 99"},
		{"panic is recovered", `{"id":14,"verb":"insmod","args":{"path":"/x.ko"}}`, 14, proto.CodeInternal, "agent panic in insmod: boom in /x.ko"},
		{"still serving", `{"id":15,"verb":"ping"}`, 15, "", ""},
		{"CRLF line", "{\"id\":16,\"verb\":\"ping\"}\r", 16, "", ""},
		{"hello on request", `{"id":17,"verb":"hello"}`, 17, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := io.WriteString(host, tt.send+"\n"); err != nil {
				t.Fatal(err)
			}
			line, err := r.ReadBytes('\n')
			if err != nil {
				t.Fatal(err)
			}
			var resp proto.Response
			if err := json.Unmarshal(line, &resp); err != nil {
				t.Fatalf("reply %q: %v", line, err)
			}
			if resp.ID != tt.wantID {
				t.Errorf("reply id %d, want %d", resp.ID, tt.wantID)
			}
			switch {
			case tt.wantCode == "" && resp.Error != nil:
				t.Errorf("error %+v", resp.Error)
			case tt.wantCode != "" && resp.Error == nil:
				t.Errorf("reply %s, want error %s", line, tt.wantCode)
			case tt.wantCode != "" && (resp.Error.Code != tt.wantCode || !strings.Contains(resp.Error.Message, tt.wantMsg)):
				t.Errorf("error %+v, want %s containing %q", resp.Error, tt.wantCode, tt.wantMsg)
			}
		})
	}
	// Blank lines are skipped without a reply.
	io.WriteString(host, "\n\n"+`{"id":18,"verb":"ping"}`+"\n")
	line, _ := r.ReadBytes('\n')
	if !strings.Contains(string(line), `"id":18`) {
		t.Errorf("after blank lines: %q", line)
	}
	joined := strings.Join(*logs, "\n")
	for _, want := range []string{"malformed frame", "larger than 1024", "panic in insmod"} {
		if !strings.Contains(joined, want) {
			t.Errorf("console log lacks %q:\n%s", want, joined)
		}
	}
}

func TestFrameReader(t *testing.T) {
	in := "one\n" + strings.Repeat("x", 100) + "\n\n  \ntwo\r\n" + strings.Repeat("y", 10) + "\nlast"
	fr := proto.NewFrameReader(strings.NewReader(in), 10)
	var got []string
	for {
		b, err := fr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			got = append(got, "ERR "+err.Error())
			continue
		}
		got = append(got, string(b))
	}
	want := "one|ERR frame too large|two|yyyyyyyyyy|last"
	if g := strings.Join(got, "|"); g != want {
		t.Errorf("frames %q, want %q", g, want)
	}
}

func TestHelpers(t *testing.T) {
	env := mergeEnv([]string{"PATH=/bin", "HOME=/", "TERM=linux"}, []string{"HOME=/root", "X=1", "PATH=/sbin"})
	if got := strings.Join(env, " "); got != "PATH=/sbin HOME=/root TERM=linux X=1" {
		t.Errorf("mergeEnv = %s", got)
	}
	for in, want := range map[string]string{"SIGTERM": "terminated", "term": "terminated", "9": "killed", "SIGUSR1": "user defined signal 1"} {
		sig, err := parseSignal(in)
		if err != nil || sig.String() != want {
			t.Errorf("parseSignal(%q) = %v, %v", in, sig, err)
		}
	}
	for _, bad := range []string{"", "SIGNOPE", "99", "-1"} {
		if _, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) succeeded", bad)
		}
	}
	c := &capBuffer{max: 5}
	c.Write([]byte("abc"))
	c.Write([]byte("defg"))
	c.Write([]byte("h"))
	if b, tr := c.bytes(); string(b) != "abcde" || !tr {
		t.Errorf("capBuffer = %q, %v", b, tr)
	}
	if p, err := lookPath("sh", []string{"PATH=/nonexistent:/bin:/usr/bin"}); err != nil || !strings.HasSuffix(p, "/sh") {
		t.Errorf("lookPath(sh) = %q, %v", p, err)
	}
}

func TestModuleOpWithoutKmsg(t *testing.T) {
	// insmod still answers when the kernel log cannot be opened.
	s := New(Config{Kernel: fakeNoLog{}})
	r, err := s.moduleOp("insmod", "/m.ko", func() error { return nil })
	if err != nil || len(r.Log) != 1 || !strings.Contains(r.Log[0], "kernel log not available") {
		t.Errorf("moduleOp = %+v, %v", r, err)
	}
}

type fakeNoLog struct{ panicKernel }

// TestSetupVerb: setup reaches the hook with its arguments and a runner, and
// answers with the hello; without a hook it is an unknown verb.
func TestSetupVerb(t *testing.T) {
	var got proto.SetupArgs
	host, r, _ := rawServer(t, Config{
		Hello: func() proto.Hello { return proto.Hello{Protocol: proto.Version, Hostname: got.Hostname} },
		Setup: func(a proto.SetupArgs) error {
			got = a
			if a.Hostname == "bad" {
				return fmt.Errorf("net eth0: FAILED")
			}
			return nil
		},
	})
	ask := func(line string) proto.Response {
		t.Helper()
		io.WriteString(host, line+"\n")
		b, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var resp proto.Response
		if err := json.Unmarshal(b, &resp); err != nil {
			t.Fatalf("reply %q: %v", b, err)
		}
		return resp
	}
	resp := ask(`{"id":1,"verb":"setup","args":{"hostname":"client","time":5,"seed":"AQI="}}`)
	var h proto.Hello
	if resp.Error != nil || json.Unmarshal(resp.Result, &h) != nil || h.Hostname != "client" {
		t.Fatalf("setup reply %+v (error %v); want a hello naming client", resp, resp.Error)
	}
	if got.Time != 5 || string(got.Seed) != "\x01\x02" {
		t.Errorf("hook saw %+v", got)
	}
	if resp := ask(`{"id":2,"verb":"setup","args":{"hostname":"bad"}}`); resp.Error == nil || !strings.Contains(resp.Error.Message, "net eth0: FAILED") {
		t.Errorf("failing setup: %+v", resp.Error)
	}

	plain, r2, _ := rawServer(t, Config{})
	io.WriteString(plain, `{"id":3,"verb":"setup","args":{}}`+"\n")
	b, _ := r2.ReadBytes('\n')
	if !strings.Contains(string(b), proto.CodeUnknownVerb) {
		t.Errorf("setup without a hook: %s", b)
	}
}
