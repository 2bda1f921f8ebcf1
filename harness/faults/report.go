package faults

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"layer45/harness/verdict"
)

// Verdict is what the suites made of one fault.
type Verdict string

const (
	// Caught: at least one test turned red, and every red test names a
	// rule of the fault.
	Caught Verdict = "CAUGHT"
	// Missed: nothing turned red (a finding: no test checks what the
	// fault breaks).
	Missed Verdict = "MISSED"
	// Stray: a red test names no rule of the fault (a finding: the fault
	// is caught by accident, or a test leans on a rule it does not name).
	Stray Verdict = "STRAY"
	// Error: no verdict; the patch did not apply or compile, or the
	// harness could not run a test.
	Error Verdict = "ERROR"
)

// Label is the verdict as the table prints it.
func (v Verdict) Label() string {
	switch v {
	case Missed:
		return "MISSED (finding: nothing red)"
	case Stray:
		return "STRAY (finding: a red test names no rule of the fault)"
	}
	return string(v)
}

// Red is a test that failed.
type Red struct {
	Package string `json:"package"`
	Name    string `json:"name"`
	// Rules are the rules its name claims (the verdict's reading).
	Rules    []string `json:"rules"`
	Evidence string   `json:"evidence,omitempty"`
	Crashes  []string `json:"crashes,omitempty"`
	// Stray: it names no rule of the fault.
	Stray bool `json:"stray,omitempty"`
}

func (r Red) key() string { return r.Package + " " + r.Name }

// Outcome is what one or more `go test -json` runs said, read through
// verdict.Read.
type Outcome struct {
	// Red are the failed tests, leaves only (a parent that failed
	// because a subtest did is not listed), sorted by name.
	Red []Red
	// Infra are tests the harness could not run ("name: why").
	Infra []string
	// Broken are packages that did not build or whose binary died.
	Broken []string
	// Ran counts the tests that named a rule, whatever their result.
	Ran int
}

// Add folds a verdict summary into o.
func (o *Outcome) Add(sum *verdict.Summary) {
	seen := map[string]int{}
	for i, r := range o.Red {
		seen[r.key()] = i
	}
	ran := map[string]bool{}
	add := func(t verdict.Test, rule string) {
		if t.Result != "fail" || t.Infra != "" {
			return
		}
		k := t.Package + " " + t.Name
		i, ok := seen[k]
		if !ok {
			i = len(o.Red)
			seen[k] = i
			o.Red = append(o.Red, Red{Package: t.Package, Name: t.Name, Evidence: t.Evidence, Crashes: t.Crashes, Rules: []string{}})
		}
		if rule != "" {
			o.Red[i].Rules = append(o.Red[i].Rules, rule)
		}
	}
	for _, r := range sum.Rules {
		for _, t := range r.Tests {
			ran[t.Package+" "+t.Name] = true
			add(t, r.Rule)
		}
	}
	for _, t := range sum.Unruled {
		add(t, "")
	}
	for _, t := range sum.Infra {
		o.Infra = append(o.Infra, t.Name+": "+t.Infra)
	}
	o.Broken = append(o.Broken, sum.Broken...)
	o.Ran += len(ran)
	sort.SliceStable(o.Red, func(i, j int) bool { return o.Red[i].key() < o.Red[j].key() })
}

// Result is one fault's line of the report.
type Result struct {
	Fault   *Fault  `json:"fault"`
	Verdict Verdict `json:"verdict"`
	// Red are the tests the fault turned red: red with it, not at the
	// baseline.
	Red []Red `json:"red"`
	// AtBaseline are tests red with the fault that were red without it
	// too: not credited to the fault.
	AtBaseline []Red `json:"red_at_baseline,omitempty"`
	// Error says why there is no verdict.
	Error string `json:"error,omitempty"`
	// Infra: the error is the harness's, not the patch's.
	Infra bool `json:"infrastructure_failure,omitempty"`
	// Warning notes something that did not stop the run (a patch
	// applied with fuzz).
	Warning string  `json:"warning,omitempty"`
	Seconds float64 `json:"seconds"`
}

// Failed is a result for a fault that could not be judged.
func Failed(f *Fault, infra bool, format string, args ...any) Result {
	return Result{Fault: f, Verdict: Error, Error: fmt.Sprintf(format, args...), Infra: infra, Red: []Red{}}
}

// Classify judges a fault from what its tests did. baseline holds the
// tests that were red without any fault (package and name): they are not
// credited. A test that failed on the harness's side, or a test package
// that broke, leaves the fault unjudged (ERROR); so does a run expression
// that selected no test. Otherwise: nothing red is MISSED; a red test whose
// rules do not meet the fault's is STRAY (the whole fault is); else CAUGHT.
func Classify(f *Fault, o *Outcome, baseline *Outcome) Result {
	res := Result{Fault: f, Red: []Red{}}
	switch {
	case len(o.Broken) > 0:
		res.Verdict, res.Infra = Error, true
		res.Error = "test package did not build or its binary died: " + strings.Join(o.Broken, ", ")
		return res
	case len(o.Infra) > 0:
		res.Verdict, res.Infra = Error, true
		res.Error = "the harness could not run " + strings.Join(o.Infra, "; ")
		return res
	case o.Ran == 0 && len(o.Red) == 0:
		res.Verdict = Error
		res.Error = fmt.Sprintf("-run %s selected no test of a rule", f.Run)
		return res
	}
	atBase := map[string]bool{}
	if baseline != nil {
		for _, r := range baseline.Red {
			atBase[r.key()] = true
		}
	}
	stray := false
	for _, r := range o.Red {
		if atBase[r.key()] {
			res.AtBaseline = append(res.AtBaseline, r)
			continue
		}
		r.Stray = true
		for _, id := range r.Rules {
			if f.HasRule(id) {
				r.Stray = false
			}
		}
		stray = stray || r.Stray
		res.Red = append(res.Red, r)
	}
	switch {
	case len(res.Red) == 0:
		res.Verdict = Missed
	case stray:
		res.Verdict = Stray
	default:
		res.Verdict = Caught
	}
	return res
}

// Baseline is the run of the unpatched tree.
type Baseline struct {
	Run     string   `json:"run"`
	Red     []Red    `json:"red"`
	Infra   []string `json:"infrastructure_failures,omitempty"`
	Broken  []string `json:"broken_packages,omitempty"`
	Seconds float64  `json:"seconds"`
	// Error: the baseline could not run at all.
	Error string `json:"error,omitempty"`
}

// Report is a whole `l45 faults` run.
type Report struct {
	// Kernel and Tree say what ran: the kernel spec and the tree patched.
	Kernel   string    `json:"kernel"`
	Tree     string    `json:"tree"`
	Sample   bool      `json:"sample"`
	Baseline *Baseline `json:"baseline,omitempty"`
	Results  []Result  `json:"faults"`
	Seconds  float64   `json:"seconds"`
}

// Counts per verdict.
func (r *Report) Counts() map[Verdict]int {
	c := map[Verdict]int{}
	for _, res := range r.Results {
		c[res.Verdict]++
	}
	return c
}

// OK: every fault caught, none stray, no error.
func (r *Report) OK() bool {
	if r.Baseline != nil && (r.Baseline.Error != "" || len(r.Baseline.Infra) > 0 || len(r.Baseline.Broken) > 0) {
		return false
	}
	for _, res := range r.Results {
		if res.Verdict != Caught {
			return false
		}
	}
	return len(r.Results) > 0
}

// InfraFailed: the harness failed somewhere, so the report is incomplete.
func (r *Report) InfraFailed() bool {
	if r.Baseline != nil && (r.Baseline.Error != "" || len(r.Baseline.Infra) > 0 || len(r.Baseline.Broken) > 0) {
		return true
	}
	for _, res := range r.Results {
		if res.Infra {
			return true
		}
	}
	return false
}

// Duration formats seconds as the table shows them: 45s, 3m05s, 1h02m.
func Duration(s float64) string {
	d := time.Duration(s * float64(time.Second)).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func (r Red) describe() string {
	s := r.Name
	if len(r.Rules) > 0 {
		s += " [" + strings.Join(r.Rules, " ") + "]"
	} else {
		s += " [no rule]"
	}
	if len(r.Crashes) > 0 {
		s += " crash: " + strings.Join(r.Crashes, "; ")
	}
	if r.Stray {
		s += " <- names no rule of the fault"
	}
	return s
}

func (res Result) label() string {
	if res.Verdict == Error {
		if res.Infra {
			return "ERROR (infrastructure)"
		}
		return "ERROR (patch)"
	}
	return res.Verdict.Label()
}

func (res Result) lines() []string {
	var out []string
	for _, t := range res.Red {
		out = append(out, t.describe())
	}
	for _, t := range res.AtBaseline {
		out = append(out, t.describe()+" (red at baseline, not credited)")
	}
	if len(out) == 0 {
		out = append(out, "-")
	}
	return out
}

// WriteTable prints the report for a person: one row per fault (the red
// tests one per line), the baseline, the totals and the findings.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tRULES\tVERDICT\tTIME\tTESTS TURNED RED")
	for _, res := range r.Results {
		lines := res.lines()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", res.Fault.Name, strings.Join(res.Fault.Rules, " "), res.label(), Duration(res.Seconds), lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(tw, "\t\t\t\t%s\n", l)
		}
	}
	tw.Flush()
	if b := r.Baseline; b != nil {
		fmt.Fprintf(w, "\nbaseline (unpatched tree, %s): ", Duration(b.Seconds))
		switch {
		case b.Error != "":
			fmt.Fprintf(w, "could not run: %s\n", b.Error)
		case len(b.Red) == 0:
			fmt.Fprintln(w, "no test red")
		default:
			fmt.Fprintf(w, "%d test(s) red, not credited to any fault:\n", len(b.Red))
			for _, t := range b.Red {
				fmt.Fprintf(w, "  %s\n", t.describe())
			}
		}
		for _, s := range b.Infra {
			fmt.Fprintf(w, "  infrastructure failure: %s\n", s)
		}
		for _, p := range b.Broken {
			fmt.Fprintf(w, "  package did not build or its binary died: %s\n", p)
		}
	}
	c := r.Counts()
	fmt.Fprintf(w, "\n%d fault(s) in %s: %d caught, %d missed, %d stray, %d error\n",
		len(r.Results), Duration(r.Seconds), c[Caught], c[Missed], c[Stray], c[Error])
	for _, res := range r.Results {
		switch res.Verdict {
		case Missed:
			fmt.Fprintf(w, "finding: %s (%s) turned nothing red with -run '%s'\n", res.Fault.Name, strings.Join(res.Fault.Rules, " "), res.Fault.Run)
		case Stray:
			var names []string
			for _, t := range res.Red {
				if t.Stray {
					names = append(names, t.Name)
				}
			}
			fmt.Fprintf(w, "finding: %s (%s) turned red a test of another rule: %s\n", res.Fault.Name, strings.Join(res.Fault.Rules, " "), strings.Join(names, ", "))
		case Error:
			fmt.Fprintf(w, "error: %s: %s\n", res.Fault.Name, strings.ReplaceAll(res.Error, "\n", "\n    "))
		}
		if res.Warning != "" {
			fmt.Fprintf(w, "warning: %s: %s\n", res.Fault.Name, res.Warning)
		}
	}
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

func mdCode(s string) string {
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}

// Markdown is the report as faults.md.
func (r *Report) Markdown() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Deliberate faults\n\n")
	fmt.Fprintf(&b, "Layer 4.5 tree %s patched with each fault of `kernel/faults/`, on %s", mdCode(r.Tree), mdEscape(r.Kernel))
	if r.Sample {
		b.WriteString(", sample tests included")
	}
	fmt.Fprintf(&b, "; %s in all.\n\n", Duration(r.Seconds))
	b.WriteString("| fault | rules | tests turned red | verdict | time |\n|---|---|---|---|---|\n")
	for _, res := range r.Results {
		var cells []string
		for _, l := range res.lines() {
			cells = append(cells, mdEscape(l))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", mdCode(res.Fault.Name), strings.Join(res.Fault.Rules, " "),
			strings.Join(cells, "<br>"), mdEscape(res.label()), Duration(res.Seconds))
	}
	if base := r.Baseline; base != nil {
		fmt.Fprintf(&b, "\nBaseline (unpatched, %s, `-run` the union of the faults' expressions): ", Duration(base.Seconds))
		switch {
		case base.Error != "":
			fmt.Fprintf(&b, "could not run: %s\n", mdEscape(base.Error))
		case len(base.Red) == 0:
			b.WriteString("no test red.\n")
		default:
			fmt.Fprintf(&b, "%d test(s) red, not credited to any fault:\n\n", len(base.Red))
			for _, t := range base.Red {
				fmt.Fprintf(&b, "- %s\n", mdEscape(t.describe()))
			}
		}
		for _, s := range base.Infra {
			fmt.Fprintf(&b, "- infrastructure failure: %s\n", mdEscape(s))
		}
	}
	var notes []string
	for _, res := range r.Results {
		switch res.Verdict {
		case Missed, Stray:
			notes = append(notes, fmt.Sprintf("- %s: %s", mdCode(res.Fault.Name), mdEscape(res.Verdict.Label())))
		case Error:
			notes = append(notes, fmt.Sprintf("- %s: error: %s", mdCode(res.Fault.Name), mdEscape(firstLine(res.Error))))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n## Findings and errors\n\n" + strings.Join(notes, "\n") + "\n")
	}
	b.WriteString("\n## The faults\n\n")
	for _, res := range r.Results {
		f := res.Fault
		fmt.Fprintf(&b, "- %s (%s): %s. Tests: `-run %s`", mdCode(f.Name), strings.Join(f.Rules, " "), mdEscape(strings.TrimSuffix(f.Models, ".")), f.Run)
		if f.Sample != "" {
			fmt.Fprintf(&b, "; sample: `%s`", f.Sample)
		}
		b.WriteString(".\n")
	}
	return []byte(b.String())
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// JSON is the report as faults.json.
func (r *Report) JSON() []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return append(b, '\n')
}

// RedAt lists the names of o's red tests, sorted (for progress lines).
func RedAt(o *Outcome) []string {
	var names []string
	for _, r := range o.Red {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return names
}
