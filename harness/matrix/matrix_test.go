package matrix

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"layer45/harness/kernels"
	"layer45/harness/verdict"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// summary reads a verdict from go test -json lines.
func summary(t *testing.T, lines ...string) *verdict.Summary {
	t.Helper()
	s, err := verdict.Read(strings.NewReader(strings.Join(lines, "\n")), nil)
	require.NoError(t, err)
	return s
}

func passing(t *testing.T) *verdict.Summary {
	var lines []string
	for _, r := range verdict.Rules {
		name := "Test" + r + "_Holds"
		lines = append(lines, `{"Action":"run","Package":"layer45/suites","Test":"`+name+`"}`,
			`{"Action":"pass","Package":"layer45/suites","Test":"`+name+`","Elapsed":1}`)
	}
	return summary(t, lines...)
}

func TestMergeJoinsJobsIncludingMissingAndFailedOnes(t *testing.T) {
	matrix := []kernels.MatrixEntry{
		{Name: "5.10", Kernel: "debian:bullseye:5.10", Nightly: true},
		{Name: "6.1", Kernel: "debian:bookworm:6.1", Nightly: true},
		{Name: "6.12", Kernel: "debian:trixie:6.12", Nightly: true},
		{Name: "7.2", Kernel: "debian:sid:7.2", Nightly: true},
	}
	dir := t.TempDir()
	red := passing(t)
	// 7.2: one R9 test fails with a crash and evidence.
	red2 := summary(t,
		`{"Action":"run","Package":"layer45/suites","Test":"TestR9_Ubuf/R9/send-single-buffer"}`,
		`{"Action":"attr","Package":"layer45/suites","Test":"TestR9_Ubuf/R9/send-single-buffer","Key":"l45.crash","Value":"WARNING in l45_sendmsg"}`,
		`{"Action":"attr","Package":"layer45/suites","Test":"TestR9_Ubuf/R9/send-single-buffer","Key":"l45.evidence","Value":"_artifacts/run/TestR9_Ubuf"}`,
		`{"Action":"fail","Package":"layer45/suites","Test":"TestR9_Ubuf/R9/send-single-buffer","Elapsed":2}`,
		`{"Action":"run","Package":"layer45/suites","Test":"TestR1_Holds"}`,
		`{"Action":"pass","Package":"layer45/suites","Test":"TestR1_Holds","Elapsed":1}`)
	for _, r := range []Result{
		{Kernel: matrix[0], Outcome: Infra, Error: "prepare guests: gcc-10 is not available", Seconds: 3},
		{Kernel: matrix[1], Outcome: Ran, Verdict: red, Seconds: 240, Crashes: allRecognised()},
		{Kernel: matrix[3], Outcome: Ran, Verdict: red2, Seconds: 300, Crashes: &CrashCheck{Modes: []ModeResult{
			{Mode: "bug", Result: "pass"}, {Mode: "warn", Result: "fail", Evidence: "_artifacts/run/warn"}}}},
	} {
		_, err := r.Write(dir)
		require.NoError(t, err)
	}
	tab, err := Merge(matrix, dir)
	require.NoError(t, err)
	require.Len(t, tab.Results, 4)
	require.True(t, tab.Results[1].Crashes.OK())
	require.False(t, tab.Results[3].Crashes.OK(), "a mode not recognised")
	require.Equal(t, Missing, tab.Results[2].Outcome, "6.12 never reported")
	require.False(t, tab.OK())

	cell, passed, total := tab.Results[1].Cell("R4")
	require.Equal(t, []any{"PASS", 1, 1}, []any{cell, passed, total})
	cell, _, _ = tab.Results[3].Cell("R9")
	require.Equal(t, "FAIL", cell)
	cell, _, _ = tab.Results[3].Cell("R4")
	require.Equal(t, "MISSING", cell, "no test of R4 ran on 7.2")
	cell, _, _ = tab.Results[0].Cell("R1")
	require.Equal(t, "INFRA", cell)

	var text, md bytes.Buffer
	tab.WriteText(&text)
	tab.WriteMarkdown(&md)
	golden(t, "table.txt", text.Bytes())
	golden(t, "table.md", md.Bytes())

	// Every kernel green: OK.
	for _, e := range []kernels.MatrixEntry{matrix[0], matrix[2], matrix[3]} {
		_, err := (&Result{Kernel: e, Outcome: Ran, Verdict: passing(t), Crashes: allRecognised()}).Write(dir)
		require.NoError(t, err)
	}
	tab, err = Merge(matrix, dir)
	require.NoError(t, err)
	require.True(t, tab.OK())

	// Rules green but crash reports never checked: not OK.
	_, err = (&Result{Kernel: matrix[2], Outcome: Ran, Verdict: passing(t)}).Write(dir)
	require.NoError(t, err)
	tab, err = Merge(matrix, dir)
	require.NoError(t, err)
	require.False(t, tab.OK())
}

func allRecognised() *CrashCheck {
	return &CrashCheck{Modes: []ModeResult{{Mode: "bug", Result: "pass"}, {Mode: "warn", Result: "pass"}}}
}

func TestReadCrashCheck(t *testing.T) {
	ev := func(action, test string, extra ...string) string {
		s := `{"Action":"` + action + `","Package":"layer45/harness/vm","Test":"` + test + `"`
		for i := 0; i+1 < len(extra); i += 2 {
			s += `,"` + extra[i] + `":"` + extra[i+1] + `"`
		}
		return s + "}"
	}
	const top = CrashTest
	stream := strings.Join([]string{
		ev("run", top), ev("run", top+"/warn"),
		ev("output", top+"/warn", "Output", "warn ok\\n"),
		ev("pass", top+"/warn"), ev("run", top+"/null"),
		ev("attr", top+"/null", "Key", "l45.evidence", "Value", "_artifacts/x/null"),
		ev("fail", top+"/null"), ev("fail", top),
		ev("run", "TestSomethingElse"), ev("fail", "TestSomethingElse"),
	}, "\n")
	var echo bytes.Buffer
	c, err := ReadCrashCheck(strings.NewReader(stream), &echo)
	require.NoError(t, err)
	require.Equal(t, &CrashCheck{Failed: true, Modes: []ModeResult{
		{Mode: "null", Result: "fail", Evidence: "_artifacts/x/null"},
		{Mode: "warn", Result: "pass"},
	}}, c)
	require.False(t, c.OK())
	require.Equal(t, "FAIL 1/2", c.cell())
	require.Equal(t, "warn ok\n", echo.String())

	skipped := &CrashCheck{Modes: []ModeResult{{Mode: "sleep_atomic", Result: "skip"}, {Mode: "warn", Result: "pass"}}}
	require.True(t, skipped.OK(), "a mode the kernel cannot report is skipped, not failed")
	require.Equal(t, "PASS 1/1 (1 skipped)", skipped.cell())
	require.False(t, (&CrashCheck{Modes: []ModeResult{{Mode: "warn", Result: "skip"}}}).OK(), "nothing recognised")

	_, err = ReadCrashCheck(strings.NewReader(ev("fail", "TestOther")), nil)
	require.ErrorContains(t, err, "has no result of "+CrashTest)
}

func TestMergeRefusesForeignFiles(t *testing.T) {
	e := kernels.MatrixEntry{Name: "6.1", Kernel: "debian:bookworm:6.1"}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, FileName(e)), []byte("not json"), 0o644))
	_, err := Merge([]kernels.MatrixEntry{e}, dir)
	require.ErrorContains(t, err, "is not a matrix result")

	other := kernels.MatrixEntry{Name: "7.2", Kernel: "debian:sid:7.2"}
	b, err := (&Result{Kernel: other, Outcome: Infra, Error: "x"}).Write(dir)
	require.NoError(t, err)
	require.NoError(t, os.Rename(b, filepath.Join(dir, FileName(e))))
	_, err = Merge([]kernels.MatrixEntry{e}, dir)
	require.ErrorContains(t, err, `holds the result of kernel "7.2"`)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(p, got, 0o644))
	}
	want, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))
}
