package verdict

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestRulesOf(t *testing.T) {
	for name, want := range map[string][]string{
		"TestR3_DropOnSend":               {"R3"},
		"TestVerdicts/R4/error-recv":      {"R4"},
		"TestR12_R13_DeprecatedDigServer": {"R12", "R13"},
		"TestRouting":                     nil,
		"TestHarness/R2D2":                nil,
		"TestContract/R16_unprivileged":   {"R16"},
		"TestR6_R7_R8_Verdicts/R7/skip":   {"R7"},
		"TestR6_R7_R8_Verdicts/R6/R8/x":   {"R6", "R8"},
		"TestR3_R4/plain-subtest":         {"R3", "R4"},
	} {
		require.Equal(t, want, rulesOf(name), name)
	}
}

func TestReadGolden(t *testing.T) {
	f, err := os.Open("testdata/run.jsonl")
	require.NoError(t, err)
	defer f.Close()
	sum, err := Read(f, nil)
	require.NoError(t, err)
	var table bytes.Buffer
	sum.WriteTable(&table)
	golden := "testdata/run.table.golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, table.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), table.String())
	require.False(t, sum.OK())

	byRule := map[string]Rule{}
	for _, r := range sum.Rules {
		byRule[r.Rule] = r
	}
	require.Equal(t, "PASS", byRule["R3"].Result)
	require.Equal(t, "FAIL", byRule["R4"].Result, "one failing subtest fails the rule")
	require.Equal(t, []string{"/work/_artifacts/run1/TestVerdicts/R4/error-recv"}, byRule["R4"].Evidence)
	require.Equal(t, "SKIP", byRule["R10"].Result, "a skipped test proves nothing")
	require.Equal(t, "PASS", byRule["R13"].Result)
	require.Equal(t, "FAIL", byRule["R1"].Result, "a test that never finished (binary panicked) failed")
	require.Equal(t, "MISSING", byRule["R7"].Result)
	require.Equal(t, "FAIL", byRule["R11"].Result, "a crash found at the parent's cleanup fails the rules it names")
	require.Equal(t, "FAIL", byRule["R14"].Result)
	require.Equal(t, []string{"/work/_artifacts/run1/TestR11_R14_Live"}, byRule["R11"].Evidence)
	require.Equal(t, []string{"layer45/suites/broken"}, sum.Broken)
	require.Equal(t, "6.1.0-57-amd64", byRule["R4"].Tests[0].Kernel)
	require.Equal(t, []string{"WARNING in l45_toggle"}, byRule["R11"].Tests[0].Crashes)
	require.Equal(t, "INFRA", byRule["R16"].Result, "a harness failure is no verdict on the rule")
	require.Len(t, sum.Infra, 1)
	require.Equal(t, "prepare guests: qemu-system-x86_64 is not installed", sum.Infra[0].Infra)
	require.Empty(t, sum.Unruled)
}
