package console

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the .golden files of testdata/crashes")

// goldenReport is what a golden file pins down of a Report: the verdict and
// where the report starts and ends in the stream.
type goldenReport struct {
	Title     string
	Kind      string
	Func      string `json:",omitempty"`
	Corrupted bool   `json:",omitempty"`
	Line      int
	First     string // first line of Report.Lines
	Last      string // last line of Report.Lines
	Count     int    // len(Report.Lines)
}

func toGolden(reps []Report) []goldenReport {
	out := []goldenReport{}
	for _, r := range reps {
		g := goldenReport{Title: r.Title, Kind: r.Kind, Func: r.Func, Corrupted: r.Corrupted, Line: r.Line, Count: len(r.Lines)}
		if len(r.Lines) > 0 {
			g.First, g.Last = r.Lines[0], r.Lines[len(r.Lines)-1]
		}
		out = append(out, g)
	}
	return out
}

// feedLines feeds text to a fresh detector one line at a time.
func feedLines(text string, opts ...Option) []Report {
	d := NewDetector(opts...)
	var reps []Report
	for _, l := range strings.SplitAfter(text, "\n") {
		if l == "" {
			continue
		}
		reps = append(reps, d.Feed(strings.TrimSuffix(l, "\n"))...)
	}
	return append(reps, d.Flush()...)
}

// feedAll feeds text to a fresh detector in one call.
func feedAll(text string, opts ...Option) []Report {
	d := NewDetector(opts...)
	reps := d.Feed(text)
	return append(reps, d.Flush()...)
}

func crashFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "crashes", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/crashes/*.txt")
	}
	return files
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGolden runs every console excerpt of testdata/crashes through a
// detector and compares the reports with NAME.txt.golden.
func TestGolden(t *testing.T) {
	for _, file := range crashFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			got := toGolden(feedLines(readFile(t, file)))
			js, err := json.MarshalIndent(got, "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			js = append(js, '\n')
			golden := file + ".golden"
			if *update {
				if err := os.WriteFile(golden, js, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			var want []goldenReport
			if err := json.Unmarshal([]byte(readFile(t, golden)), &want); err != nil {
				t.Fatalf("%s: %v", golden, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("reports differ from %s (-want +got):\n%s\nrun with -update to accept", golden, diff)
			}
		})
	}
}

// TestFeedAtOnce checks that the way the stream is cut into Feed calls does
// not matter, and that "\r\n" line ends change nothing.
func TestFeedAtOnce(t *testing.T) {
	for _, file := range crashFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			text := readFile(t, file)
			byLine := feedLines(text)
			if diff := cmp.Diff(byLine, feedAll(text)); diff != "" {
				t.Errorf("feeding all at once differs (-by line +at once):\n%s", diff)
			}
			crlf := strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n")
			if diff := cmp.Diff(byLine, feedLines(crlf)); diff != "" {
				t.Errorf("CRLF line ends change the reports (-LF +CRLF):\n%s", diff)
			}
		})
	}
}

// TestGoldenKinds checks that every kind of the table has a golden file
// with a report of that kind.
func TestGoldenKinds(t *testing.T) {
	found := map[string]bool{}
	for _, file := range crashFiles(t) {
		var reps []goldenReport
		if err := json.Unmarshal([]byte(readFile(t, file+".golden")), &reps); err != nil {
			t.Fatalf("%s.golden: %v", file, err)
		}
		for _, r := range reps {
			found[r.Kind] = true
		}
	}
	for _, k := range kinds {
		if !found[k.kind] {
			t.Errorf("no golden file has a report of kind %q", k.kind)
		}
	}
}

// TestEveryEntryTested checks that every entry of the kinds table starts a
// report in some golden file.
func TestEveryEntryTested(t *testing.T) {
	used := map[*crashKind]bool{}
	for _, file := range crashFiles(t) {
		text := readFile(t, file)
		stamped := hasStamp(text)
		for _, raw := range strings.Split(text, "\n") {
			for _, l := range parseLines(raw) {
				if k, _ := match(l.text); k != nil && (l.kernel || !stamped) {
					used[k] = true
				}
			}
		}
	}
	for _, k := range kinds {
		if !used[k] {
			t.Errorf("no line of testdata/crashes matches %s", k.header)
		}
	}
}

// TestKindTable checks that every placeholder of a title template can be
// filled.
func TestKindTable(t *testing.T) {
	for _, k := range kinds {
		names := map[string]bool{"func": true}
		for _, n := range k.header.SubexpNames() {
			names[n] = true
		}
		for _, f := range k.fields {
			for _, n := range f.SubexpNames() {
				names[n] = true
			}
		}
		for _, m := range placeholder.FindAllStringSubmatch(k.title, -1) {
			if !names[m[1]] {
				t.Errorf("%s: title %q uses {%s}, which no regexp captures", k.header, k.title, m[1])
			}
		}
		if strings.Contains(k.title, "{func}") && len(k.culprit) == 0 {
			t.Errorf("%s: title %q blames a function but has no culprit source", k.header, k.title)
		}
	}
}

func TestContextOptions(t *testing.T) {
	text := readFile(t, filepath.Join("testdata", "crashes", "warning.txt"))
	def := feedLines(text)
	if len(def) != 1 {
		t.Fatalf("want 1 report, got %d", len(def))
	}
	tests := []struct {
		name string
		opts []Option
		want func(t *testing.T, r Report)
	}{
		{"no context", []Option{WithContext(0, 0)}, func(t *testing.T, r Report) {
			if !strings.Contains(r.Lines[0], "WARNING: CPU:") {
				t.Errorf("first line %q is not the header", r.Lines[0])
			}
			if !strings.Contains(r.Lines[len(r.Lines)-1], "end trace") {
				t.Errorf("last line %q is not the end marker", r.Lines[len(r.Lines)-1])
			}
		}},
		{"max lines", []Option{WithMaxLines(7)}, func(t *testing.T, r Report) {
			if len(r.Lines) != 7 {
				t.Errorf("kept %d lines, want 7", len(r.Lines))
			}
		}},
		{"more context", []Option{WithContext(2, 3)}, func(t *testing.T, r Report) {
			if !strings.Contains(r.Lines[2], "WARNING: CPU:") {
				t.Errorf("line 2 %q is not the header", r.Lines[2])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reps := feedLines(text, tt.opts...)
			if len(reps) != 1 {
				t.Fatalf("want 1 report, got %d", len(reps))
			}
			if reps[0].Title != def[0].Title {
				t.Errorf("title %q, want %q", reps[0].Title, def[0].Title)
			}
			tt.want(t, reps[0])
		})
	}
}

func TestDuplicates(t *testing.T) {
	// The hung task detector reports dig twice (and another task once).
	text := readFile(t, filepath.Join("testdata", "crashes", "hung_task.txt"))
	if n := len(feedLines(text)); n != 2 {
		t.Errorf("default: %d reports, want 2", n)
	}
	if n := len(feedLines(text, WithDuplicates())); n != 3 {
		t.Errorf("WithDuplicates: %d reports, want 3", n)
	}
}

// TestReportsComeEarly checks that a report is returned by Feed once the
// kernel has moved on, not only by Flush.
func TestReportsComeEarly(t *testing.T) {
	text := readFile(t, filepath.Join("testdata", "crashes", "two_crashes.txt"))
	d := NewDetector()
	var early int
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		early += len(d.Feed(l))
	}
	if early != 2 {
		t.Errorf("Feed returned %d reports before Flush, want 2", early)
	}
	if n := len(d.Flush()); n != 0 {
		t.Errorf("Flush returned %d reports, want 0", n)
	}
}

func TestDetectorLineIndex(t *testing.T) {
	d := NewDetector()
	var reps []Report
	for _, l := range []string{
		"[    1.000000] hello",
		"user space",
		"[    2.000000] kernel BUG at net/x.c:12!",
		"[    2.000001] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
		"[    2.000002] RIP: 0010:x_do+0x1c/0x40 [x]",
	} {
		reps = append(reps, d.Feed(l)...)
	}
	reps = append(reps, d.Flush()...)
	want := []Report{{
		Title: "kernel BUG in x_do",
		Kind:  KindKernelBUG,
		Func:  "x_do",
		Line:  2,
		Lines: []string{
			"[    1.000000] hello",
			"user space",
			"[    2.000000] kernel BUG at net/x.c:12!",
			"[    2.000001] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
			"[    2.000002] RIP: 0010:x_do+0x1c/0x40 [x]",
		},
	}}
	if diff := cmp.Diff(want, reps); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMaxLinesKeepsHeader(t *testing.T) {
	var lines []string
	for i := 0; i < 30; i++ {
		lines = append(lines, fmt.Sprintf("[    1.%06d] filler %d", i, i))
	}
	lines = append(lines, "[    2.000000] kernel BUG at net/x.c:12!", "[    2.000001] RIP: 0010:x_do+0x1c/0x40 [x]")
	reps := feedAll(strings.Join(lines, "\n"), WithContext(20, 10), WithMaxLines(5))
	if len(reps) != 1 {
		t.Fatalf("%d reports, want 1", len(reps))
	}
	// Context before the header takes at most half of the lines.
	want := []string{
		"[    1.000028] filler 28", "[    1.000029] filler 29",
		"[    2.000000] kernel BUG at net/x.c:12!", "[    2.000001] RIP: 0010:x_do+0x1c/0x40 [x]",
	}
	if diff := cmp.Diff(want, reps[0].Lines); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
