package verdict

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestClaimsOf(t *testing.T) {
	rules := func(ids ...string) claims { return claims{Rules: ids} }
	for name, want := range map[string]claims{
		"TestR3_DropOnSend":               rules("R3"),
		"TestVerdicts/R4/error-recv":      rules("R4"),
		"TestR12_R13_DeprecatedDigServer": rules("R12", "R13"),
		"TestRouting":                     {},
		"TestHarness/R2D2":                {},
		"TestContract/R16_unprivileged":   rules("R16"),
		"TestR6_R7_R8_Verdicts/R7/skip":   rules("R7"),
		"TestR6_R7_R8_Verdicts/R6/R8/x":   rules("R6", "R8"),
		"TestR3_R4/plain-subtest":         rules("R3", "R4"),
		// Deviations: an element of its own, or one's start.
		"TestR3_R4/R4/D1-send-error":          {Rules: []string{"R4"}, Deviations: []string{"D1"}},
		"TestV/R6/R8/D2-stale-no_cust":        {Rules: []string{"R6", "R8"}, Deviations: []string{"D2"}},
		"TestL/R15/D4/D19-unload-mid-call":    {Rules: []string{"R15"}, Deviations: []string{"D4", "D19"}},
		"TestL/R15/D04-leading-zero":          {Rules: []string{"R15"}, Deviations: []string{"D4"}},
		"TestL/R15/DNS-is-no-deviation":       rules("R15"),
		"TestL/R15/D4x-is-no-deviation":       rules("R15"),
		"TestR3_R4/R4/send-after-D1-in-words": rules("R4"),
		// Decisions claim nothing else: not the subtest's rules, and
		// not its top-level test's either.
		"TestR5_R9_Replace/I18/log-text":  {Decisions: []string{"I18"}},
		"TestControl/R1/I2/dup-logged":    {Decisions: []string{"I2"}},
		"TestControl/I24-challenge-hex":   {Decisions: []string{"I24"}},
		"TestI2C_Bus":                     {},
		"TestR1_Registration/R1/I2C-chip": rules("R1"),
	} {
		require.Equal(t, want, claimsOf(name), name)
	}
}

// read runs Read on testdata/NAME.jsonl and compares the printed verdict
// with testdata/NAME.table.golden.
func read(t *testing.T, name string) *Summary {
	t.Helper()
	f, err := os.Open("testdata/" + name + ".jsonl")
	require.NoError(t, err)
	defer f.Close()
	sum, err := Read(f, nil)
	require.NoError(t, err)
	var table bytes.Buffer
	sum.WriteTable(&table)
	golden := "testdata/" + name + ".table.golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, table.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), table.String())
	return sum
}

func TestReadGolden(t *testing.T) {
	sum := read(t, "run")
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
	require.Len(t, sum.Deviations, 20)
	for _, d := range sum.Deviations {
		require.Equal(t, "MISSING", d.Result, "no test names %s", d.ID)
	}
	require.Empty(t, sum.Decisions)
}

// Deviations and decisions: a failing decision test is reported apart
// and fails no rule; a deviation no test names is MISSING.
func TestReadGoldenDeviationsAndDecisions(t *testing.T) {
	sum := read(t, "decisions")
	byRule := map[string]Rule{}
	for _, r := range sum.Rules {
		byRule[r.Rule] = r
	}
	items := func(list []Item) map[string]Item {
		m := map[string]Item{}
		for _, it := range list {
			m[it.ID] = it
		}
		return m
	}
	dev, dec := items(sum.Deviations), items(sum.Decisions)

	require.Equal(t, "PASS", byRule["R5"].Result, "the failing I18 test under TestR5_R9_... is no R5 test")
	require.Len(t, byRule["R5"].Tests, 1)
	require.Equal(t, "MISSING", byRule["R9"].Result)
	require.Equal(t, "MISSING", byRule["R1"].Result, "R1/I1/... is a decision test only")
	require.Equal(t, "FAIL", byRule["R6"].Result, "a deviation's test is a rule test too")
	require.Empty(t, sum.Unruled, "a failing decision test is not an unruled failure")

	require.Equal(t, "PASS", dev["D1"].Result)
	require.Equal(t, "FAIL", dev["D2"].Result)
	require.Equal(t, []string{"/work/_artifacts/run2/TestR6_R7_R8_Verdicts/R6/R8/D2-stale-no_cust"}, dev["D2"].Evidence)
	require.Equal(t, "PASS", dev["D14"].Result)
	require.Equal(t, "SKIP", dev["D18"].Result)
	require.Equal(t, "MISSING", dev["D13"].Result)
	require.Empty(t, dev["D13"].Tests)

	require.Equal(t, []string{"I1", "I2", "I18"}, []string{sum.Decisions[0].ID, sum.Decisions[1].ID, sum.Decisions[2].ID}, "in number order")
	require.Len(t, sum.Decisions, 3)
	require.Equal(t, "FAIL", dec["I18"].Result)
	require.Equal(t, "PASS", dec["I2"].Result)
	require.Equal(t, "PASS", dec["I1"].Result)
}

// OK judges rules only: a failing decision does not change it.
func TestOKIgnoresDecisions(t *testing.T) {
	s := &Summary{Decisions: []Item{{ID: "I2", Result: "FAIL", Tests: []Test{{Name: "TestX/I2/y", Result: "fail"}}}}}
	for _, id := range Rules {
		s.Rules = append(s.Rules, Rule{Rule: id, Result: "PASS"})
	}
	require.True(t, s.OK())
	s.Rules[3].Result = "FAIL"
	require.False(t, s.OK())
}
