package console

import (
	"errors"
	"fmt"
	"io"
	"math/rand"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock advances by step on every reading.
type fakeClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

var epoch = time.Date(2024, 2, 1, 12, 0, 0, 0, time.UTC)

// recorder collects what a stream logs and writes.
type recorder struct {
	mu   sync.Mutex
	logs []string
	file strings.Builder
}

func (r *recorder) log(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, s)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.file.Write(p)
}

func newTestStream(rec *recorder, opts ...StreamOption) *Stream {
	clock := &fakeClock{t: epoch, step: 0}
	base := []StreamOption{WithLog(rec.log), WithFile(rec), WithStart(epoch), WithClock(clock.now)}
	return NewStream("client", append(base, opts...)...)
}

// logged strips the "client   0.000s| " prefix from the logged lines.
func logged(rec *recorder) []string {
	var out []string
	for _, l := range rec.logs {
		_, text, _ := strings.Cut(l, "| ")
		out = append(out, text)
	}
	return out
}

func TestStreamLines(t *testing.T) {
	tests := []struct {
		name    string
		writes  []string
		maxLine int
		want    []string // lines as logged
		file    []string // lines as written to the file, without timestamp
	}{
		{name: "empty", writes: nil, want: nil},
		{name: "lines", writes: []string{"a\nb\n"}, want: []string{"a", "b"}},
		{name: "crlf", writes: []string{"a\r\nb\r\n"}, want: []string{"a", "b"}},
		{name: "split crlf", writes: []string{"a\r", "\nb\r", "\n"}, want: []string{"a", "b"}},
		{name: "empty lines", writes: []string{"\n\r\n\n"}, want: []string{"", "", ""}},
		{name: "unended last line", writes: []string{"a\nb"}, want: []string{"a", "b"}},
		{name: "line across writes", writes: []string{"he", "ll", "o\n"}, want: []string{"hello"}},
		{name: "long line", writes: []string{"abcdefghij\n"}, maxLine: 4, want: []string{"abcd", "efgh", "ij"}},
		{name: "long line in pieces", writes: []string{"ab", "cdef", "ghij", "\n"}, maxLine: 4,
			want: []string{"abcd", "efgh", "ij"}},
		{name: "line at cap", writes: []string{"abcd\n", "efgh", "\n"}, maxLine: 4, want: []string{"abcd", "efgh"}},
		{
			name:   "escapes",
			writes: []string{"\x1b[2J\x1b[01;01HSeaBIOS (version 1.16.2)\r\n", "\x1b[1mbold\x1b[0m\n"},
			want:   []string{"SeaBIOS (version 1.16.2)", "bold"},
			file:   []string{"\x1b[2J\x1b[01;01HSeaBIOS (version 1.16.2)", "\x1b[1mbold\x1b[0m"},
		},
		{name: "control characters", writes: []string{"a\x00b\x08c\td\r\r\n"}, want: []string{"abc\td"},
			file: []string{"a\x00b\x08c\td\r"}},
		{name: "invalid utf-8", writes: []string{"a\xffb\n"}, want: []string{"a\uFFFDb"}, file: []string{"a\xffb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			var opts []StreamOption
			if tt.maxLine > 0 {
				opts = append(opts, WithMaxLineLength(tt.maxLine))
			}
			s := newTestStream(rec, opts...)
			for _, w := range tt.writes {
				n, err := s.Write([]byte(w))
				if n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, logged(rec)); diff != "" {
				t.Errorf("logged lines (-want +got):\n%s", diff)
			}
			wantFile := tt.file
			if wantFile == nil {
				wantFile = tt.want
			}
			var gotFile []string
			for _, l := range strings.SplitAfter(rec.file.String(), "\n") {
				if l == "" {
					continue
				}
				stamp, text, _ := strings.Cut(strings.TrimSuffix(l, "\n"), " 0.000000 ")
				if strings.TrimSpace(stamp) != "" {
					t.Errorf("file line %q has no timestamp", l)
				}
				gotFile = append(gotFile, text)
			}
			if diff := cmp.Diff(wantFile, gotFile); diff != "" {
				t.Errorf("file lines (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, s.Tail(100)); len(tt.want) > 0 && diff != "" {
				t.Errorf("Tail (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStreamTimestamps(t *testing.T) {
	rec := &recorder{}
	clock := &fakeClock{t: epoch, step: 1500 * time.Millisecond}
	s := NewStream("server", WithLog(rec.log), WithFile(rec), WithStart(epoch), WithClock(clock.now))
	fmt.Fprint(s, "[    0.000000] Linux version 6.1.0-18-amd64\nhello\n")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantLog := []string{
		"server    1.500s| [    0.000000] Linux version 6.1.0-18-amd64",
		"server    3.000s| hello",
	}
	if diff := cmp.Diff(wantLog, rec.logs); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	wantFile := "  1.500000 [    0.000000] Linux version 6.1.0-18-amd64\n  3.000000 hello\n"
	if diff := cmp.Diff(wantFile, rec.file.String()); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}
	if s.Name() != "server" {
		t.Errorf("Name() = %q", s.Name())
	}
}

func TestStreamTail(t *testing.T) {
	s := NewStream("g", WithTailLines(3), WithDetector(nil))
	tests := []struct {
		write string
		n     int
		want  []string
	}{
		{"", 5, []string{}},
		{"1\n2\n", 5, []string{"1", "2"}},
		{"", 1, []string{"2"}},
		{"3\n4\n5\n", 5, []string{"3", "4", "5"}},
		{"6\n", 2, []string{"5", "6"}},
		{"", 0, []string{}},
		{"", -1, []string{}},
	}
	for _, tt := range tests {
		fmt.Fprint(s, tt.write)
		if diff := cmp.Diff(tt.want, s.Tail(tt.n)); diff != "" {
			t.Errorf("after %q, Tail(%d) (-want +got):\n%s", tt.write, tt.n, diff)
		}
	}
}

// TestStreamReports writes every golden console excerpt into a stream in
// random pieces and checks that the stream finds what the detector finds
// line by line, and calls back for each report in order.
func TestStreamReports(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, file := range crashFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			text := readFile(t, file)
			want := feedLines(text)
			var called []Report
			var s *Stream
			s = NewStream("g", WithReport(func(r Report) {
				called = append(called, r)
				// Readers may be called from the callback.
				if got := s.Reports(); len(got) < len(called) {
					t.Errorf("in the callback, Reports has %d reports, %d were reported", len(got), len(called))
				}
				_ = s.Tail(5)
			}))
			for rest := []byte(text); len(rest) > 0; {
				n := min(len(rest), 1+rng.Intn(200))
				if _, err := s.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, s.Reports()); diff != "" {
				t.Errorf("stream reports differ from the detector's (-detector +stream):\n%s", diff)
			}
			if diff := cmp.Diff(want, called); diff != "" {
				t.Errorf("callbacks differ from the reports (-reports +callbacks):\n%s", diff)
			}
		})
	}
}

// TestStreamConcurrent copies a crash into a stream from one goroutine, as
// QEMU's output is, while others read; run with -race.
func TestStreamConcurrent(t *testing.T) {
	text := readFile(t, filepath.Join("testdata", "crashes", "two_crashes.txt"))
	rec := &recorder{}
	s := NewStream("client", WithLog(rec.log), WithFile(rec))
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				_ = s.Reports()
				_ = s.Tail(10)
			}
		}()
	}
	for i := 0; i < len(text); i += 17 {
		if _, err := s.Write([]byte(text[i:min(i+17, len(text))])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	close(done)
	wg.Wait()
	var titles []string
	for _, r := range s.Reports() {
		titles = append(titles, r.Title)
	}
	want := []string{"WARNING in l45_sk_release", "unregister_netdevice: waiting for l45tap0 to become free"}
	if diff := cmp.Diff(want, titles); diff != "" {
		t.Errorf("titles (-want +got):\n%s", diff)
	}
	if got, want := len(rec.logs), strings.Count(text, "\n"); got != want {
		t.Errorf("logged %d lines, want %d", got, want)
	}
}

type failingWriter struct{ calls int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.calls++
	return 0, errors.New("disk full")
}

func TestStreamFileError(t *testing.T) {
	fw := &failingWriter{}
	var lines int
	s := NewStream("g", WithFile(fw), WithLog(func(string) { lines++ }))
	for i := 0; i < 3; i++ {
		if _, err := fmt.Fprintf(s, "line %d\n", i); err != nil {
			t.Fatalf("Write failed: %v", err)
		}
	}
	err := s.Close()
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Close() = %v, want the file error", err)
	}
	if fw.calls != 1 {
		t.Errorf("file written %d times after failing, want 1", fw.calls)
	}
	if lines != 3 {
		t.Errorf("logged %d lines, want 3", lines)
	}
}

func TestStreamClose(t *testing.T) {
	s := NewStream("g")
	fmt.Fprint(s, "[    1.000000] kernel BUG at net/x.c:12!\n[    1.000001] RIP: 0010:x_do+0x1c/0x40 [x]")
	if n := len(s.Reports()); n != 0 {
		t.Fatalf("%d reports before Close, want 0", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	reps := s.Reports()
	if len(reps) != 1 || reps[0].Title != "kernel BUG in x_do" {
		t.Errorf("after Close, reports %+v; want kernel BUG in x_do", reps)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Write([]byte("x\n")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
}

func TestStreamCompletesAReportWhenTheConsoleGoesQuiet(t *testing.T) {
	got := make(chan Report, 1)
	s := NewStream("g", WithSettle(50*time.Millisecond), WithReport(func(r Report) { got <- r }))
	defer s.Close()
	// A WARNING whose trailing context never comes: the guest idles.
	io.WriteString(s, "[    1.000000] WARNING: CPU: 0 PID: 1 at drivers/x.c:1 foo_init+0x1/0x2 [x]\n"+
		"[    1.000001] RIP: 0010:foo_init+0x1/0x2 [x]\n"+
		"[    1.000002] ---[ end trace 0000000000000000 ]---\n")
	select {
	case r := <-got:
		if r.Title != "WARNING in foo_init" {
			t.Fatalf("title %q", r.Title)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the report was held back although the console went quiet")
	}
}
