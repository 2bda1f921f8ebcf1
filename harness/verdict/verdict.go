// Package verdict turns a `go test -json` stream of the end-to-end suites
// into a per-rule verdict: which tests prove each rule of the Layer 4.5
// contract (a test names its rule, as in TestR3_DropOnSend or a subtest
// R3/drop-send), whether they passed, and where a failure's evidence is.
// The rules are those of CONTRACT.md at the top of the repository.
//
// Two more lists come with it. Known deviations (CONTRACT.md §4, D1…D20):
// a rule test that is the regression test of one names it with a name
// element "D1" or one starting "D1-" (R4/D1-send-error-takes-effect); a
// deviation no test names is MISSING. Implementation decisions (§5,
// I1…I27): a test asserting one names it the same way ("I2" or "I2-…")
// and then counts for that decision only, never for a rule, even one its
// name also gives: a choice the contract leaves open proves no rule. A
// failing decision test fails go test, but not the per-rule verdict.
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
	"strconv"
	"strings"
	"text/tabwriter"

	"layer45/harness/artifacts"
)

// Rules is the contract's rule list; a rule no test names is MISSING.
var Rules = numbered("R", 16)

// Deviations are the contract's known deviations (§4); one no test names
// is MISSING.
var Deviations = numbered("D", 20)

func numbered(prefix string, n int) []string {
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, fmt.Sprintf("%s%d", prefix, i))
	}
	return ids
}

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

// Item is the verdict on one known deviation or implementation decision:
// the result of the tests naming it, judged like a rule's.
type Item struct {
	ID       string   `json:"id"`
	Result   string   `json:"result"` // PASS, FAIL, SKIP, MISSING, INFRA
	Tests    []Test   `json:"tests"`
	Evidence []string `json:"evidence,omitempty"`
}

// Summary is the whole verdict.
type Summary struct {
	Rules []Rule `json:"rules"`
	// Deviations lists every known deviation with its regression tests
	// (which are rule tests too). PASS: the deviation is not there.
	Deviations []Item `json:"deviations"`
	// Decisions lists the implementation decisions tests assert, by
	// number. They are not rules: OK ignores them.
	Decisions []Item `json:"decisions,omitempty"`
	// Unruled lists failing tests that name no rule and no decision
	// (harness tests, say).
	Unruled []Test `json:"unruled_failures,omitempty"`
	// Broken lists packages that did not build or whose binary died.
	Broken []string `json:"broken_packages,omitempty"`
	// Infra lists tests the harness could not run (no QEMU, a kernel that
	// cannot be built, ...).
	Infra []Test `json:"infrastructure_failures,omitempty"`
}

var (
	ruleRe = regexp.MustCompile(`^R(\d{1,2})$`)
	// A deviation or a decision is a name element of its own or starts
	// one: "D1", "D1-error-verdict", "I2".
	deviationRe = regexp.MustCompile(`^D(\d{1,2})(?:-|$)`)
	decisionRe  = regexp.MustCompile(`^I(\d{1,2})(?:-|$)`)
)

// claims are the ids a test name gives.
type claims struct {
	Rules, Deviations, Decisions []string
}

// claimsOf reads a test name. A subtest claims what its own part of the
// name says, and only when that says nothing what its top-level test
// says: the subtests of TestR6_R7_R8_Verdicts each prove one of the
// three rules, not all of them. A test claiming a decision claims
// nothing else.
func claimsOf(name string) claims {
	if ids := idsOf(name, "I", decisionRe); len(ids) > 0 {
		return claims{Decisions: ids}
	}
	return claims{Rules: idsOf(name, "R", ruleRe), Deviations: idsOf(name, "D", deviationRe)}
}

// idsOf returns the ids re finds in name's own part, else in its
// top-level test's, normalised to prefix and the number.
func idsOf(name, prefix string, re *regexp.Regexp) []string {
	top, sub, isSub := strings.Cut(name, "/")
	if isSub {
		if ids := words(sub, prefix, re); len(ids) > 0 {
			return ids
		}
	}
	return words(strings.TrimPrefix(top, "Test"), prefix, re)
}

// words are the ids among name's words (split at / and _).
func words(name, prefix string, re *regexp.Regexp) []string {
	var out []string
	seen := map[string]bool{}
	for _, word := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '_' }) {
		m := re.FindStringSubmatch(word)
		if m == nil {
			continue
		}
		id := prefix + strings.TrimLeft(m[1], "0")
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
	byRule := map[string][]Test{}
	byDeviation := map[string][]Test{}
	byDecision := map[string][]Test{}
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
		c := claimsOf(t.Name)
		if t.Result == "fail" && t.Infra != "" {
			sum.Infra = append(sum.Infra, *t)
		}
		if len(c.Rules) == 0 && len(c.Decisions) == 0 && t.Result == "fail" && t.Infra == "" {
			sum.Unruled = append(sum.Unruled, *t)
		}
		for _, id := range c.Rules {
			byRule[id] = append(byRule[id], *t)
		}
		for _, id := range c.Deviations {
			byDeviation[id] = append(byDeviation[id], *t)
		}
		for _, id := range c.Decisions {
			byDecision[id] = append(byDecision[id], *t)
		}
	}
	for p, failed := range pkgFailed {
		if failed && !pkgHasTests[p] {
			sum.Broken = append(sum.Broken, p)
		}
	}
	sort.Strings(sum.Broken)
	for _, id := range Rules {
		result, evidence := judge(byRule[id])
		sum.Rules = append(sum.Rules, Rule{Rule: id, Result: result, Tests: byRule[id], Evidence: evidence})
	}
	for _, id := range Deviations {
		result, evidence := judge(byDeviation[id])
		sum.Deviations = append(sum.Deviations, Item{ID: id, Result: result, Tests: byDeviation[id], Evidence: evidence})
	}
	var decisions []string
	for id := range byDecision {
		decisions = append(decisions, id)
	}
	sort.Slice(decisions, func(i, j int) bool { return number(decisions[i]) < number(decisions[j]) })
	for _, id := range decisions {
		result, evidence := judge(byDecision[id])
		sum.Decisions = append(sum.Decisions, Item{ID: id, Result: result, Tests: byDecision[id], Evidence: evidence})
	}
	return sum, nil
}

// number is an id's number: 24 for I24.
func number(id string) int {
	n, _ := strconv.Atoi(id[1:])
	return n
}

// judge is the result of the tests naming one id, and their evidence.
func judge(tests []Test) (string, []string) {
	var evidence []string
	for _, t := range tests {
		if t.Evidence != "" {
			evidence = append(evidence, t.Evidence)
		}
	}
	return resultOf(tests), evidence
}

func resultOf(tests []Test) string {
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

// OK reports whether every rule passed and nothing else broke. Decisions
// do not count: they are not rules. Deviations count through the rule
// tests that are their regression tests.
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

// WriteTable prints the verdict for a person: the rules, what else went
// wrong, then the known deviations and the implementation decisions.
func (s *Summary) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tRESULT\tTESTS\tPASSED\tEVIDENCE")
	for _, r := range s.Rules {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.Rule, r.Result, len(r.Tests), passed(r.Tests), orDash(r.Evidence))
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
	crashes := func(tests []Test) {
		for _, t := range tests {
			if listed[t.Name] {
				continue
			}
			listed[t.Name] = true
			for _, c := range t.Crashes {
				fmt.Fprintf(w, "kernel crash in %s: %s\n", t.Name, c)
			}
		}
	}
	for _, r := range s.Rules {
		crashes(r.Tests)
	}
	for _, d := range s.Decisions {
		crashes(d.Tests)
	}

	fmt.Fprintln(w, "\nKnown deviations of the established implementation (CONTRACT.md §4): a regression test names each;")
	fmt.Fprintln(w, "PASS means the deviation is absent, MISSING that no test names it. Their tests count in the rules above.")
	writeItems(w, "DEVIATION", s.Deviations)
	if len(s.Decisions) == 0 {
		return
	}
	fmt.Fprintln(w, "\nImplementation decisions (CONTRACT.md §5) that tests assert. They are not rules: a failing one fails")
	fmt.Fprintln(w, "go test, but counts neither in the rule verdict above nor in the exit status.")
	writeItems(w, "DECISION", s.Decisions)
}

// writeItems prints one row per deviation or decision, with its tests.
func writeItems(w io.Writer, head string, items []Item) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tRESULT\tTESTS\tPASSED\tEVIDENCE\tNAMES\n", head)
	for _, it := range items {
		var names []string
		for _, t := range it.Tests {
			names = append(names, t.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", it.ID, it.Result, len(it.Tests), passed(it.Tests), orDash(it.Evidence), orDash(names))
	}
	tw.Flush()
}

func passed(tests []Test) int {
	n := 0
	for _, t := range tests {
		if t.Result == "pass" {
			n++
		}
	}
	return n
}

// orDash joins ss with blanks; "-" when there are none.
func orDash(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return strings.Join(ss, " ")
}
