package faults

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"layer45/harness/repo"
	"layer45/harness/verdict"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

const diff = `--- a/layer4_5/datapath.c
+++ b/layer4_5/datapath.c
@@ -1,1 +1,1 @@
-a
+b
`

func TestParse(t *testing.T) {
	good := "# fault: error-sign\n# rules: R4\n# models: D1 unsigned copy_length\n# run: TestR3_R4_DropAndError/^R4$\n" +
		"# sample: TestR3_R4_DropAndError/^R3$/drop-send\n#\n# Free text: read by people.\n" + diff
	f, err := Parse("error-sign", []byte(good))
	require.NoError(t, err)
	require.Equal(t, &Fault{Name: "error-sign", Rules: []string{"R4"}, Models: "D1 unsigned copy_length",
		Run: "TestR3_R4_DropAndError/^R4$", Sample: "TestR3_R4_DropAndError/^R3$/drop-send",
		Notes: []string{"Free text: read by people."}, Files: []string{"layer4_5/datapath.c"}}, f)
	require.Equal(t, "TestR3_R4_DropAndError/^R4$|TestR3_R4_DropAndError/^R3$/drop-send", f.Expr(true))
	require.Equal(t, "TestR3_R4_DropAndError/^R4$", f.Expr(false))

	f, err = Parse("two", []byte("# fault: two\n# rules: R8, R6 R8\n# models: D2\n# run: TestR6_R7_R8_Verdicts\n"+diff))
	require.NoError(t, err)
	require.Equal(t, []string{"R8", "R6"}, f.Rules, "commas or blanks, duplicates dropped")
	require.Empty(t, f.Sample)
	require.True(t, f.HasRule("R6"))
	require.False(t, f.HasRule("R16"))

	header := func(lines ...string) string { return strings.Join(lines, "\n") + "\n" + diff }
	for _, tc := range []struct {
		name, file, data, want string
	}{
		{"no run", "x", header("# fault: x", "# rules: R4", "# models: D1"), "header lacks # run:"},
		{"nothing", "x", diff, "header lacks # fault:, # rules:, # models:, # run:"},
		{"unknown field", "x", header("# fault: x", "# rule: R4", "# models: m", "# run: TestX"), `line 2: unknown header field "rule"`},
		{"twice", "x", header("# fault: x", "# rules: R4", "# rules: R5", "# models: m", "# run: TestX"), `line 3: header field "rules" given twice`},
		{"empty value", "x", header("# fault: x", "# rules: R4", "# models:", "# run: TestX"), `line 3: header field "models" is empty`},
		{"name differs", "x", header("# fault: y", "# rules: R4", "# models: m", "# run: TestX"), `names fault "y" but the file is x.patch`},
		{"bad name", "Bad_Name", header("# fault: Bad_Name"), "use lowercase letters"},
		{"not a rule", "x", header("# fault: x", "# rules: R4 R17", "# models: m", "# run: TestX"), `"R17" is not a rule`},
		{"lowercase rule", "x", header("# fault: x", "# rules: r4", "# models: m", "# run: TestX"), `"r4" is not a rule`},
		{"bad regexp", "x", header("# fault: x", "# rules: R4", "# models: m", "# run: TestX/(R4"), "alternative 1, level 2"},
		{"bad level", "x", header("# fault: x", "# rules: R4", "# models: m", "# run: TestX/R[4"), "alternative 1, level 2"},
		{"every test", "x", header("# fault: x", "# rules: R4", "# models: m", "# run: TestX|/R4"), "alternative 2 selects every top-level test"},
		{"bad sample", "x", header("# fault: x", "# rules: R4", "# models: m", "# run: TestX", "# sample: ("), "sample:"},
		{"no diff", "x", "# fault: x\n# rules: R4\n# models: m\n# run: TestX\n", "no unified diff"},
		{"outside", "x", "# fault: x\n# rules: R4\n# models: m\n# run: TestX\n--- a/../x.c\n+++ b/../x.c\n", "outside the tree"},
		{"no prefix", "x", "# fault: x\n# rules: R4\n# models: m\n# run: TestX\n--- x.c\n+++ x.c\n", "one leading directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.file, []byte(tc.data))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestSplitRunAndUnion(t *testing.T) {
	for expr, want := range map[string][][]string{
		"TestA":                      {{"TestA"}},
		"TestA/^R4$/x":               {{"TestA", "^R4$", "x"}},
		"TestA/^R14$/(five|apply)":   {{"TestA", "^R14$", "(five|apply)"}},
		"TestA/^R11$|TestB/^R16$/rf": {{"TestA", "^R11$"}, {"TestB", "^R16$", "rf"}},
		`TestA/[/|]x\/y|TestB`:       {{"TestA", `[/|]x\/y`}, {"TestB"}},
	} {
		require.Equal(t, want, SplitRun(expr), expr)
		require.NoError(t, CheckRun(expr), expr)
	}
	require.Equal(t, "TestA/^R4$|TestB|TestA/^R3$/x",
		Union([]string{"TestA/^R4$", "TestB|TestA/^R4$", "TestA/^R3$/x"}))
	require.Error(t, CheckRun(" TestA"))
	require.Error(t, CheckRun(""))
}

// red builds a verdict test that failed.
func red(name string, attrs ...string) verdict.Test {
	t := verdict.Test{Package: "layer45/suites", Name: name, Result: "fail"}
	if len(attrs) > 0 {
		t.Infra = attrs[0]
	}
	return t
}

func pass(name string) verdict.Test {
	return verdict.Test{Package: "layer45/suites", Name: name, Result: "pass"}
}

// summary files tests under the rules their names claim, as verdict.Read
// does; tests naming no rule go to Unruled when they failed.
func summary(tests map[string][]verdict.Test, unruled ...verdict.Test) *verdict.Summary {
	s := &verdict.Summary{}
	for _, id := range verdict.Rules {
		s.Rules = append(s.Rules, verdict.Rule{Rule: id, Tests: tests[id]})
	}
	for _, t := range unruled {
		if t.Infra != "" {
			s.Infra = append(s.Infra, t)
		} else {
			s.Unruled = append(s.Unruled, t)
		}
	}
	return s
}

func TestClassify(t *testing.T) {
	fault := &Fault{Name: "stale-flags", Rules: []string{"R8", "R6"}, Run: "TestR6_R7_R8_Verdicts"}
	const (
		stale   = "TestR6_R7_R8_Verdicts/R8/regression-stale-try_next-udp"
		both    = "TestR6_R7_R8_Verdicts/R6/R8/regression-stale-no_cust"
		skip    = "TestR6_R7_R8_Verdicts/R7/set_cust_to_skip-udp"
		replace = "TestR5_R9_ReplaceAndSegments/R5/R9/replace-tag-single-buffer-tcp"
	)
	outcome := func(sums ...*verdict.Summary) *Outcome {
		o := &Outcome{}
		for _, s := range sums {
			o.Add(s)
		}
		return o
	}
	clean := outcome()
	names := func(rs []Red) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}

	t.Run("caught", func(t *testing.T) {
		o := outcome(summary(map[string][]verdict.Test{
			"R6": {red(both)}, "R8": {red(stale), red(both)}, "R7": {pass(skip)},
		}))
		res := Classify(fault, o, clean)
		require.Equal(t, Caught, res.Verdict)
		require.Equal(t, []string{both, stale}, names(res.Red), "sorted by name")
		require.Equal(t, []string{"R6", "R8"}, res.Red[0].Rules, "a test under two rules is one red test")
		require.False(t, res.Red[0].Stray)
		require.False(t, res.Red[1].Stray)
	})
	t.Run("missed", func(t *testing.T) {
		o := outcome(summary(map[string][]verdict.Test{"R8": {pass(stale)}, "R7": {pass(skip)}}))
		res := Classify(fault, o, clean)
		require.Equal(t, Missed, res.Verdict)
		require.Empty(t, res.Red)
		require.Equal(t, "MISSED (finding: nothing red)", res.Verdict.Label())
	})
	t.Run("stray", func(t *testing.T) {
		o := outcome(summary(map[string][]verdict.Test{"R8": {red(stale)}, "R7": {red(skip)}}))
		res := Classify(fault, o, clean)
		require.Equal(t, Stray, res.Verdict)
		require.Equal(t, []string{skip, stale}, names(res.Red))
		require.True(t, res.Red[0].Stray, "R7 is no rule of the fault")
		require.False(t, res.Red[1].Stray)
	})
	t.Run("stray-only", func(t *testing.T) {
		o := outcome(summary(map[string][]verdict.Test{"R5": {red(replace)}, "R9": {red(replace)}}))
		require.Equal(t, Stray, Classify(fault, o, clean).Verdict)
	})
	t.Run("unruled-red-is-stray", func(t *testing.T) {
		o := outcome(summary(map[string][]verdict.Test{"R8": {red(stale)}}, red("TestActivationMatchingOrdering")))
		res := Classify(fault, o, clean)
		require.Equal(t, Stray, res.Verdict)
		require.Equal(t, "TestActivationMatchingOrdering", res.Red[0].Name)
		require.Equal(t, []string{}, res.Red[0].Rules)
		require.True(t, res.Red[0].Stray)
	})
	t.Run("red-at-baseline-not-credited", func(t *testing.T) {
		base := outcome(summary(map[string][]verdict.Test{"R8": {red(stale)}, "R7": {red(skip)}}))
		o := outcome(summary(map[string][]verdict.Test{"R8": {red(stale)}, "R7": {red(skip)}}))
		res := Classify(fault, o, base)
		require.Equal(t, Missed, res.Verdict, "both were red without the fault")
		require.Equal(t, []string{skip, stale}, names(res.AtBaseline))
		o = outcome(summary(map[string][]verdict.Test{"R8": {red(stale), red(both)}, "R6": {red(both)}, "R7": {red(skip)}}))
		res = Classify(fault, o, base)
		require.Equal(t, Caught, res.Verdict, "the R7 test red at baseline does not make it stray")
		require.Equal(t, []string{both}, names(res.Red))
	})
	t.Run("infrastructure", func(t *testing.T) {
		o := outcome(summary(map[string][]verdict.Test{"R8": {red(stale), red(both, "no QEMU")}}, red(both, "no QEMU")))
		res := Classify(fault, o, clean)
		require.Equal(t, Error, res.Verdict)
		require.True(t, res.Infra)
		require.Contains(t, res.Error, "no QEMU")
	})
	t.Run("broken-package", func(t *testing.T) {
		s := summary(nil)
		s.Broken = []string{"layer45/suites"}
		res := Classify(fault, outcome(s), clean)
		require.Equal(t, Error, res.Verdict)
		require.True(t, res.Infra)
	})
	t.Run("nothing-selected", func(t *testing.T) {
		res := Classify(fault, outcome(summary(nil)), clean)
		require.Equal(t, Error, res.Verdict)
		require.False(t, res.Infra, "a -run expression that selects nothing is the header's fault")
		require.Contains(t, res.Error, "selected no test")
	})
	t.Run("two-runs-merge", func(t *testing.T) {
		o := outcome(summary(map[string][]verdict.Test{"R8": {red(stale)}}), summary(map[string][]verdict.Test{"R8": {red(stale)}, "R6": {red(both)}, "R7": {pass(skip)}}))
		require.Equal(t, []string{both, stale}, names(o.Red))
	})
}

// Through verdict.Read: a parent that failed because its subtests did is
// not a red test of its own; the subtests are, with their rules.
func TestOutcomeFromGoTestJSON(t *testing.T) {
	stream := `{"Action":"run","Package":"layer45/suites","Test":"TestR6_R7_R8_Verdicts"}
{"Action":"run","Package":"layer45/suites","Test":"TestR6_R7_R8_Verdicts/R6/R8/regression-stale-no_cust"}
{"Action":"attr","Package":"layer45/suites","Test":"TestR6_R7_R8_Verdicts/R6/R8/regression-stale-no_cust","Key":"l45.evidence","Value":"_artifacts/x/y"}
{"Action":"fail","Package":"layer45/suites","Test":"TestR6_R7_R8_Verdicts/R6/R8/regression-stale-no_cust","Elapsed":3}
{"Action":"run","Package":"layer45/suites","Test":"TestR6_R7_R8_Verdicts/R7/skip"}
{"Action":"pass","Package":"layer45/suites","Test":"TestR6_R7_R8_Verdicts/R7/skip","Elapsed":2}
{"Action":"fail","Package":"layer45/suites","Test":"TestR6_R7_R8_Verdicts","Elapsed":9}
{"Action":"fail","Package":"layer45/suites","Elapsed":10}
`
	sum, err := verdict.Read(strings.NewReader(stream), nil)
	require.NoError(t, err)
	o := &Outcome{}
	o.Add(sum)
	require.Equal(t, []Red{{Package: "layer45/suites", Name: "TestR6_R7_R8_Verdicts/R6/R8/regression-stale-no_cust",
		Rules: []string{"R6", "R8"}, Evidence: "_artifacts/x/y"}}, o.Red)
	require.Equal(t, 2, o.Ran)
	res := Classify(&Fault{Name: "stale-flags", Rules: []string{"R8", "R6"}, Run: "TestR6_R7_R8_Verdicts"}, o, &Outcome{})
	require.Equal(t, Caught, res.Verdict)
}

// suiteTests are the top-level test functions of suites/.
func suiteTests(t *testing.T, root string) []string {
	files, err := filepath.Glob(filepath.Join(root, "suites", "*_test.go"))
	require.NoError(t, err)
	re := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			names = append(names, m[1])
		}
	}
	require.NotEmpty(t, names)
	return names
}

// Every patch of kernel/faults has a valid header, applies cleanly (no
// fuzz) to a fresh copy of kernel/, and its -run alternatives each name
// a top-level test that exists. Cheap: a copy and patch --dry-run.
func TestEveryFaultAppliesToKernel(t *testing.T) {
	root, err := repo.Root()
	require.NoError(t, err)
	kernel := filepath.Join(root, "kernel")
	all, err := Load(filepath.Join(kernel, "faults"))
	require.NoError(t, err)
	tests := suiteTests(t, root)
	readme, err := os.ReadFile(filepath.Join(kernel, "faults", "README.md"))
	require.NoError(t, err)
	for _, f := range all {
		require.Contains(t, string(readme), "| `"+f.Name+"` |", "kernel/faults/README.md does not list %s", f.Name)
	}
	for _, f := range all {
		t.Run(f.Name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, CopyTree(kernel, dir))
			_, err := os.Stat(filepath.Join(dir, "faults"))
			require.True(t, os.IsNotExist(err), "the copy must leave the faults out")
			a, err := Apply(context.Background(), f, dir, true)
			require.NoError(t, err)
			require.False(t, a.Fuzz, "%s applies only with fuzz: refresh it against kernel/\n%s", f.Name, a.Output)
			if a.Offset {
				t.Logf("%s applies with an offset (harmless; refresh it some day):\n%s", f.Name, a.Output)
			}
			for _, file := range f.Files {
				_, err := os.Stat(filepath.Join(kernel, file))
				require.NoError(t, err, "the patch changes %s", file)
			}
			for _, expr := range []string{f.Run, f.Sample} {
				for _, alt := range SplitRun(expr) {
					if expr == "" {
						continue
					}
					re := regexp.MustCompile(alt[0])
					found := false
					for _, name := range tests {
						found = found || re.MatchString(name)
					}
					require.True(t, found, "%s: %q matches no top-level test of suites/", f.Name, alt[0])
				}
			}
		})
	}
}

func TestReportGolden(t *testing.T) {
	errSign := &Fault{Name: "error-sign", Rules: []string{"R4"}, Models: "D1 unsigned copy_length: the error verdict never fires",
		Run: "TestR3_R4_DropAndError/^R4$", Sample: "TestR3_R4_DropAndError/^R3$/drop-send"}
	count := &Fault{Name: "report-count-stuck", Rules: []string{"R16"}, Models: "own: CUST_REPORT counts do not drop at close",
		Run: "TestActivationMatchingOrdering/^R11$|TestRegistrationBuffersControl/^R16$/report-format"}
	overrun := &Fault{Name: "apply-now-overrun", Rules: []string{"R14"}, Models: "D8 sixth module overrun, through apply_now",
		Run: "TestActivationMatchingOrdering/^R14$"}
	broken := &Fault{Name: "accept-null", Rules: []string{"R15", "R14"}, Models: "D6 failed accept NULL deref",
		Run: "TestLifecycle/^R15$/nonblocking-accept"}
	infraF := &Fault{Name: "no-cap-check", Rules: []string{"R16"}, Models: "D17 control without CAP_NET_ADMIN",
		Run: "TestRegistrationBuffersControl/^R16$/unprivileged"}
	atBase := Red{Package: "layer45/suites", Name: "TestR3_R4_DropAndError/R4/out-of-range-EIO", Rules: []string{"R4"}}
	rep := &Report{
		Kernel: "debian:bookworm", Tree: "/repo/kernel", Sample: true, Seconds: 3723,
		Baseline: &Baseline{Run: "…", Red: []Red{atBase}, Seconds: 1500},
		Results: []Result{
			{Fault: errSign, Verdict: Caught, Seconds: 185, AtBaseline: []Red{atBase}, Red: []Red{
				{Name: "TestR3_R4_DropAndError/R4/send-EPERM-tcp", Rules: []string{"R4"}},
				{Name: "TestR3_R4_DropAndError/R4/recv-EPERM-udp", Rules: []string{"R4"}, Crashes: []string{"BUG: kernel NULL pointer dereference"}},
			}},
			{Fault: count, Verdict: Stray, Seconds: 61, Red: []Red{
				{Name: "TestActivationMatchingOrdering/R11/inactive-attached-counted-not-called-toggle-live", Rules: []string{"R11"}, Stray: true},
			}},
			{Fault: overrun, Verdict: Missed, Seconds: 302, Red: []Red{}},
			{Fault: broken, Verdict: Error, Error: "accept-null.patch does not apply to /tmp/x: exit status 1\nHunk #1 FAILED", Red: []Red{}, Seconds: 0.4},
			{Fault: infraF, Verdict: Error, Infra: true, Error: "the harness could not run TestRegistrationBuffersControl: no QEMU", Red: []Red{},
				Warning: "the patch applied only with fuzz", Seconds: 12},
		},
	}
	var table strings.Builder
	rep.WriteTable(&table)
	for golden, got := range map[string]string{
		"testdata/report.txt.golden": table.String(),
		"testdata/report.md.golden":  string(rep.Markdown()),
	} {
		if *update {
			require.NoError(t, os.MkdirAll("testdata", 0o755))
			require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
		}
		want, err := os.ReadFile(golden)
		require.NoError(t, err, "run go test ./harness/faults -update to create it")
		require.Equal(t, string(want), got, "%s differs; run with -update to accept", golden)
	}
	require.False(t, rep.OK())
	require.True(t, rep.InfraFailed())
	require.Equal(t, map[Verdict]int{Caught: 1, Stray: 1, Missed: 1, Error: 2}, rep.Counts())

	ok := &Report{Results: []Result{{Fault: errSign, Verdict: Caught}}, Baseline: &Baseline{}}
	require.True(t, ok.OK())
	require.False(t, ok.InfraFailed())
	require.False(t, (&Report{}).OK(), "no fault judged is not a success")

	for s, want := range map[float64]string{0.4: "0s", 59.6: "1m00s", 185: "3m05s", 3723: "1h02m"} {
		require.Equal(t, want, Duration(s))
	}
}
