// Package verdict turns a `go test -json` stream of the end-to-end suites
// into a per-rule verdict: which tests prove each rule of the Layer 4.5
// contract (a test names its rule, as in TestR3_DropOnSend or a subtest
// R3/drop-send), whether they passed, and where a failure's evidence is.
// The rules are those of CONTRACT.md at the top of the repository.
//
// What the harness knows about a test beyond pass or fail comes as test
// attributes (artifacts.Attr*): the evidence folder, the guests' kernel, the
// titles of kernel crashes, and whether the failure was the harness's own
// (infrastructure), which is never counted against a rule.
package verdict

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"

	"layer45/harness/artifacts"
)

// Rules is the contract's rule list; a rule no test names is MISSING.
var Rules = func() []string {
	var r []string
	for i := 1; i <= 16; i++ {
		r = append(r, fmt.Sprintf("R%d", i))
	}
	return r
}()

// event is one line of `go test -json` (test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
	Key     string // Action "attr" (testing.T.Attr)
	Value   string
}

// Test is one test's outcome.
type Test struct {
	Package  string  `json:"package"`
	Name     string  `json:"name"`
	Result   string  `json:"result"` // pass, fail, skip
	Seconds  float64 `json:"seconds"`
	Evidence string  `json:"evidence,omitempty"`
	Kernel   string  `json:"kernel,omitempty"`
	// Crashes are the titles of kernel reports that failed the test.
	Crashes []string `json:"crashes,omitempty"`
	// Infra says why the harness could not run the test; such a test is
	// no verdict on any rule.
	Infra string `json:"infrastructure_failure,omitempty"`
}

// Rule is one rule's verdict.
type Rule struct {
	Rule     string   `json:"rule"`
	Result   string   `json:"result"` // PASS, FAIL, SKIP, MISSING, INFRA
	Tests    []Test   `json:"tests"`
	Evidence []string `json:"evidence,omitempty"`
}

// Summary is the whole verdict.
type Summary struct {
	Rules []Rule `json:"rules"`
	// Unruled lists failing tests that name no rule (harness tests, say).
	Unruled []Test `json:"unruled_failures,omitempty"`
	// Broken lists packages that did not build or whose binary died.
	Broken []string `json:"broken_packages,omitempty"`
	// Infra lists tests the harness could not run (no QEMU, a kernel that
	// cannot be built, ...).
	Infra []Test `json:"infrastructure_failures,omitempty"`
}

var ruleRe = regexp.MustCompile(`^R(\d{1,2})$`)

// rulesOf returns the rule ids a test name claims: words (split at / and
// _) that are R<n>. A subtest claims what its own part of the name says,
// and only when that says nothing what its top-level test says: the
// subtests of TestR6_R7_R8_Verdicts each prove one of the three rules,
// not all of them.
func rulesOf(name string) []string {
	top, sub, isSub := strings.Cut(name, "/")
	if isSub {
		if ids := ruleWords(sub); len(ids) > 0 {
			return ids
		}
	}
	return ruleWords(strings.TrimPrefix(top, "Test"))
}

func ruleWords(name string) []string {
	var out []string
	seen := map[string]bool{}
	for _, word := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '_' }) {
		m := ruleRe.FindStringSubmatch(word)
		if m == nil {
			continue
		}
		id := "R" + strings.TrimLeft(m[1], "0")
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// keptOutput bounds the lines kept per test for echoing a failure.
const keptOutput = 300

// Read consumes a test2json stream. When echo is not nil it gets a readable
// log: one line per finished test, and a failing test's output (its last
// lines: guest consoles are long, the folder has them whole).
func Read(r io.Reader, echo io.Writer) (*Summary, error) {
	tests := map[string]*Test{}
	var order []string
	pkgFailed := map[string]bool{}
	pkgHasTests := map[string]bool{}
	output := map[string][]string{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 1<<20), 16<<20)
	for s.Scan() {
		line := s.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			// go test prints build failures as plain text.
			if echo != nil {
				fmt.Fprintf(echo, "%s\n", line)
			}
			continue
		}
		if e.Test == "" {
			switch e.Action {
			case "fail":
				pkgFailed[e.Package] = true
				if echo != nil {
					fmt.Fprintf(echo, "FAIL %s\n", e.Package)
				}
			case "pass":
				if echo != nil {
					fmt.Fprintf(echo, "ok   %s (%.0fs)\n", e.Package, e.Elapsed)
				}
			case "output":
				if echo != nil && !strings.HasPrefix(e.Output, "PASS") && !strings.HasPrefix(e.Output, "FAIL") && !strings.HasPrefix(e.Output, "ok ") {
					io.WriteString(echo, e.Output)
				}
			}
			continue
		}
		key := e.Package + " " + e.Test
		t, ok := tests[key]
		if !ok {
			t = &Test{Package: e.Package, Name: e.Test}
			tests[key] = t
			order = append(order, key)
		}
		switch e.Action {
		case "attr":
			switch e.Key {
			case artifacts.AttrEvidence:
				t.Evidence = e.Value
			case artifacts.AttrKernel:
				t.Kernel = e.Value
			case artifacts.AttrCrash:
				t.Crashes = append(t.Crashes, e.Value)
			case artifacts.AttrInfra:
				t.Infra = e.Value
			}
		case "output":
			output[key] = append(output[key], e.Output)
			if len(output[key]) > keptOutput {
				output[key] = output[key][1:]
			}
		case "pass", "fail", "skip":
			t.Result = e.Action
			t.Seconds = e.Elapsed
			pkgHasTests[e.Package] = true
			if echo != nil {
				fmt.Fprintf(echo, "--- %s: %s (%.1fs)\n", strings.ToUpper(e.Action), e.Test, e.Elapsed)
				if e.Action == "fail" {
					io.WriteString(echo, strings.Join(output[key], ""))
				}
			}
			delete(output, key)
		}
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	sum := &Summary{}
	byRule := map[string]*Rule{}
	for _, id := range Rules {
		byRule[id] = &Rule{Rule: id}
	}
	// parents calls mark with the key of every test above key's test.
	parents := func(key string, mark map[string]bool) {
		t := tests[key]
		for n := t.Name; strings.Contains(n, "/"); {
			n = n[:strings.LastIndex(n, "/")]
			mark[t.Package+" "+n] = true
		}
	}
	hasSubtests := map[string]bool{}
	for _, key := range order {
		parents(key, hasSubtests)
	}
	// A subtest named "R4/error-recv" has no test "R4" above it, so every
	// prefix of a name is marked.
	subtestFailed := map[string]bool{}
	for _, key := range order {
		if r := tests[key].Result; r == "fail" || r == "" {
			parents(key, subtestFailed)
		}
	}
	for _, key := range order {
		t := tests[key]
		if t.Result == "" {
			t.Result = "fail" // the binary died mid-test
		}
		// A parent's subtests speak for its rules. It counts itself only
		// when it failed on its own (a boot, or a crash found at its
		// cleanup), not because one of them failed.
		if hasSubtests[key] && (t.Result != "fail" || subtestFailed[key]) {
			continue
		}
		ids := rulesOf(t.Name)
		if t.Result == "fail" && t.Infra != "" {
			sum.Infra = append(sum.Infra, *t)
		}
		if len(ids) == 0 && t.Result == "fail" && t.Infra == "" {
			sum.Unruled = append(sum.Unruled, *t)
		}
		for _, id := range ids {
			r, ok := byRule[id]
			if !ok {
				continue
			}
			r.Tests = append(r.Tests, *t)
		}
	}
	for p, failed := range pkgFailed {
		if failed && !pkgHasTests[p] {
			sum.Broken = append(sum.Broken, p)
		}
	}
	sort.Strings(sum.Broken)
	for _, id := range Rules {
		r := byRule[id]
		r.Result = ruleResult(r.Tests)
		for _, t := range r.Tests {
			if t.Evidence != "" {
				r.Evidence = append(r.Evidence, t.Evidence)
			}
		}
		sum.Rules = append(sum.Rules, *r)
	}
	return sum, nil
}

func ruleResult(tests []Test) string {
	if len(tests) == 0 {
		return "MISSING"
	}
	pass, skip, infra := 0, 0, 0
	for _, t := range tests {
		switch {
		case t.Result == "fail" && t.Infra != "":
			infra++
		case t.Result == "fail":
			return "FAIL"
		case t.Result == "pass":
			pass++
		case t.Result == "skip":
			skip++
		}
	}
	if infra > 0 {
		return "INFRA" // not judged: the harness failed
	}
	if pass == 0 {
		return "SKIP"
	}
	return "PASS"
}

// OK reports whether every rule passed and nothing else broke.
func (s *Summary) OK() bool {
	if len(s.Unruled) > 0 || len(s.Broken) > 0 || len(s.Infra) > 0 {
		return false
	}
	for _, r := range s.Rules {
		if r.Result != "PASS" {
			return false
		}
	}
	return true
}

// WriteTable prints the verdict for a person.
func (s *Summary) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tRESULT\tTESTS\tPASSED\tEVIDENCE")
	for _, r := range s.Rules {
		passed := 0
		for _, t := range r.Tests {
			if t.Result == "pass" {
				passed++
			}
		}
		ev := "-"
		if len(r.Evidence) > 0 {
			ev = strings.Join(r.Evidence, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.Rule, r.Result, len(r.Tests), passed, ev)
	}
	tw.Flush()
	for _, t := range s.Unruled {
		fmt.Fprintf(w, "also failed: %s %s %s\n", t.Package, t.Name, t.Evidence)
	}
	for _, p := range s.Broken {
		fmt.Fprintf(w, "package did not build or its test binary died: %s\n", p)
	}
	for _, t := range s.Infra {
		fmt.Fprintf(w, "infrastructure failure, no verdict: %s: %s\n", t.Name, t.Infra)
	}
	listed := map[string]bool{}
	for _, r := range s.Rules {
		for _, t := range r.Tests {
			if listed[t.Name] {
				continue
			}
			listed[t.Name] = true
			for _, c := range t.Crashes {
				fmt.Fprintf(w, "kernel crash in %s: %s\n", t.Name, c)
			}
		}
	}
}
