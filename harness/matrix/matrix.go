// Package matrix joins per-kernel verdicts into the table of the nightly
// kernel matrix: rules down, kernels across. Each kernel's run (on this
// machine by `l45 matrix`, or as its own job of a CI matrix) leaves one
// Result as JSON; Merge reads them back, a kernel with no result is a
// MISSING column, and the table is printed as text or Markdown.
package matrix

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"layer45/harness/kernels"
	"layer45/harness/verdict"
)

// Outcome of one kernel's run.
const (
	// Ran: the suites ran; the verdict says which rules hold.
	Ran = "ran"
	// Infra: the kernel could not be prepared or the harness failed; no
	// verdict.
	Infra = "infra"
	// Missing: no result (a CI job that never reported).
	Missing = "missing"
)

// Result is one kernel's run.
type Result struct {
	Kernel  kernels.MatrixEntry `json:"kernel"`
	Outcome string              `json:"outcome"`
	// Error says what went wrong when Outcome is Infra.
	Error   string           `json:"error,omitempty"`
	Seconds float64          `json:"seconds"`
	Verdict *verdict.Summary `json:"verdict,omitempty"`
	// Crashes is CrashTest's outcome on the kernel.
	Crashes *CrashCheck `json:"crash_reports,omitempty"`
}

// FileName is where a kernel's result goes in a results folder.
func FileName(e kernels.MatrixEntry) string { return "matrix-" + e.Name + ".json" }

// Write stores r in dir as FileName.
func (r *Result) Write(dir string) (string, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, FileName(r.Kernel))
	return p, os.WriteFile(p, append(b, '\n'), 0o644)
}

// Table is the whole matrix.
type Table struct {
	Results []Result `json:"results"`
}

// Merge reads the results of the matrix's kernels from dir, in the
// matrix's order. A kernel without a result file is Missing; a file that
// cannot be read is an error naming it.
func Merge(matrix []kernels.MatrixEntry, dir string) (*Table, error) {
	t := &Table{}
	for _, e := range matrix {
		p := filepath.Join(dir, FileName(e))
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			t.Results = append(t.Results, Result{Kernel: e, Outcome: Missing})
			continue
		}
		if err != nil {
			return nil, err
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s is not a matrix result: %w", p, err)
		}
		if r.Kernel.Name != e.Name {
			return nil, fmt.Errorf("%s holds the result of kernel %q, not %q", p, r.Kernel.Name, e.Name)
		}
		if r.Outcome == Ran && r.Verdict == nil {
			return nil, fmt.Errorf("%s: a run without a verdict", p)
		}
		t.Results = append(t.Results, r)
	}
	return t, nil
}

// Cell is one rule on one kernel: PASS, FAIL, SKIP, MISSING, INFRA (as in
// the verdict), or MISSING/INFRA for a kernel without a verdict.
func (r *Result) Cell(rule string) (result string, passed, total int) {
	if r.Outcome == Missing {
		return "MISSING", 0, 0
	}
	if r.Outcome == Infra || r.Verdict == nil {
		return "INFRA", 0, 0
	}
	for _, vr := range r.Verdict.Rules {
		if vr.Rule != rule {
			continue
		}
		for _, t := range vr.Tests {
			if t.Result == "pass" {
				passed++
			}
		}
		return vr.Result, passed, len(vr.Tests)
	}
	return "MISSING", 0, 0
}

// OK reports whether every kernel ran, kept every rule and had its crash
// reports recognised.
func (t *Table) OK() bool {
	for _, r := range t.Results {
		if r.Outcome != Ran || !r.Verdict.OK() || !r.Crashes.OK() {
			return false
		}
	}
	return len(t.Results) > 0
}

func (t *Table) cells() (head []string, rows [][]string) {
	head = []string{"RULE"}
	for _, r := range t.Results {
		head = append(head, r.Kernel.Name)
	}
	for _, rule := range verdict.Rules {
		row := []string{rule}
		for i := range t.Results {
			res, passed, total := t.Results[i].Cell(rule)
			if total > 0 {
				res = fmt.Sprintf("%s %d/%d", res, passed, total)
			}
			row = append(row, res)
		}
		rows = append(rows, row)
	}
	row := []string{"crash reports"}
	for _, r := range t.Results {
		if r.Outcome != Ran {
			row = append(row, "-")
			continue
		}
		row = append(row, r.Crashes.cell())
	}
	return head, append(rows, row)
}

// failures are the lines under the table: what failed where, and why.
func (t *Table) failures() []string {
	var out []string
	for _, r := range t.Results {
		switch r.Outcome {
		case Missing:
			out = append(out, fmt.Sprintf("%s: no result (the job did not report)", r.Kernel))
		case Infra:
			out = append(out, fmt.Sprintf("%s: not run: %s", r.Kernel, r.Error))
		case Ran:
			var tests []verdict.Test
			for _, vr := range r.Verdict.Rules {
				tests = append(tests, vr.Tests...)
			}
			tests = append(tests, r.Verdict.Unruled...)
			seen := map[string]bool{}
			for _, tt := range tests {
				if tt.Result != "fail" || seen[tt.Name] {
					continue
				}
				seen[tt.Name] = true
				line := fmt.Sprintf("%s: FAIL %s", r.Kernel.Name, tt.Name)
				if tt.Infra != "" {
					line += " (infrastructure: " + tt.Infra + ")"
				}
				for _, c := range tt.Crashes {
					line += " [kernel crash: " + c + "]"
				}
				if tt.Evidence != "" {
					line += " evidence: " + tt.Evidence
				}
				out = append(out, line)
			}
			for _, p := range r.Verdict.Broken {
				out = append(out, fmt.Sprintf("%s: package did not build or died: %s", r.Kernel.Name, p))
			}
			out = append(out, r.crashFailures()...)
		}
	}
	sort.Strings(out)
	return out
}

// crashFailures are the lines for CrashTest's failures on r's kernel.
func (r *Result) crashFailures() []string {
	c := r.Crashes
	if c == nil {
		return []string{fmt.Sprintf("%s: crash reports: %s did not run", r.Kernel.Name, CrashTest)}
	}
	var out []string
	if c.Failed || len(c.Modes) == 0 {
		out = append(out, fmt.Sprintf("%s: crash reports: FAIL %s", r.Kernel.Name, CrashTest))
	}
	for _, m := range c.Modes {
		if m.Result == "pass" || m.Result == "skip" {
			continue
		}
		line := fmt.Sprintf("%s: crash reports: %s %s/%s (crash_test mode=%s)", r.Kernel.Name, strings.ToUpper(m.Result), CrashTest, m.Mode, m.Mode)
		if m.Evidence != "" {
			line += " evidence: " + m.Evidence
		}
		out = append(out, line)
	}
	return out
}

// WriteText prints the table for a terminal.
func (t *Table) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head, rows := t.cells()
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	for _, l := range t.failures() {
		fmt.Fprintln(w, l)
	}
}

// WriteMarkdown prints the table for a CI job summary.
func (t *Table) WriteMarkdown(w io.Writer) {
	head, rows := t.cells()
	fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(head)))
	for _, row := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	if f := t.failures(); len(f) > 0 {
		fmt.Fprintln(w)
		for _, l := range f {
			fmt.Fprintf(w, "- %s\n", l)
		}
	}
}
