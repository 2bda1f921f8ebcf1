// Package faults keeps the deliberate faults of Layer 4.5: small patches to
// the project's own tree (kernel/faults/NAME.patch), each reproducing one
// known failure of the established implementation (CONTRACT.md §4) or one of
// the project's own, with a header that says which rules it breaks and which
// end-to-end tests must catch it. `l45 faults` applies each to a copy of the
// tree, runs those tests against it and judges, from the per-rule verdict,
// whether the suites caught it: something turned red, and every red test
// names a rule of the fault.
//
// This package holds what needs no guest: reading the patches, applying them
// to a copy, the classification and the report. The guests are run by
// cmd/l45.
package faults

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"layer45/harness/verdict"
)

// Fault is one deliberate fault: a patch and what its header says.
type Fault struct {
	// Name is the file's name without .patch, repeated in "# fault:".
	Name string `json:"name"`
	// Rules are the contract's rules the fault breaks ("# rules:").
	Rules []string `json:"rules"`
	// Models says which bug it reproduces and how ("# models:").
	Models string `json:"models"`
	// Run is the go test -run expression selecting the tests that must
	// turn red ("# run:").
	Run string `json:"run"`
	// Sample optionally selects tests of other rules that must stay green
	// ("# sample:"); l45 faults --sample runs them too.
	Sample string `json:"sample,omitempty"`
	// Notes are the header's free-text lines.
	Notes []string `json:"notes,omitempty"`
	// Files are the tree's files the patch changes.
	Files []string `json:"files"`
	// Path is the patch file.
	Path string `json:"-"`
}

// Expr is the -run expression for the fault: its tests, and with sample
// the sample's too.
func (f *Fault) Expr(sample bool) string {
	if sample && f.Sample != "" {
		return f.Run + "|" + f.Sample
	}
	return f.Run
}

// HasRule reports whether id is one of the fault's rules.
func (f *Fault) HasRule(id string) bool {
	for _, r := range f.Rules {
		if r == id {
			return true
		}
	}
	return false
}

var (
	nameRe  = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	fieldRe = regexp.MustCompile(`^#\s*([a-z]+):\s*(.*?)\s*$`)
)

// fields are the header's keys: required ones first.
var fields = map[string]bool{"fault": true, "rules": true, "models": true, "run": true, "sample": false}

// Parse reads a patch file's header. name is the file's name without
// .patch; the header must repeat it. The header is the run of lines
// starting with '#' at the top of the file: "# key: value" lines with the
// keys fault, rules, models, run (required) and sample (optional), each at
// most once, and free-text lines ("# ..." without a lowercase key and a
// colon). A unified diff must follow.
func Parse(name string, data []byte) (*Fault, error) {
	f := &Fault{Name: name}
	if !nameRe.MatchString(name) {
		return nil, fmt.Errorf("fault name %q: use lowercase letters, digits and single dashes", name)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	line, inHeader := 0, true
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if inHeader && strings.HasPrefix(text, "#") {
			m := fieldRe.FindStringSubmatch(text)
			if m == nil {
				note := strings.TrimSpace(strings.TrimPrefix(text, "#"))
				if note != "" || len(f.Notes) > 0 {
					f.Notes = append(f.Notes, note)
				}
				continue
			}
			key, val := m[1], m[2]
			if _, ok := fields[key]; !ok {
				return nil, fmt.Errorf("line %d: unknown header field %q (known: fault, rules, models, run, sample)", line, key)
			}
			if seen[key] {
				return nil, fmt.Errorf("line %d: header field %q given twice", line, key)
			}
			seen[key] = true
			if val == "" {
				return nil, fmt.Errorf("line %d: header field %q is empty", line, key)
			}
			switch key {
			case "fault":
				if val != name {
					return nil, fmt.Errorf("line %d: the header names fault %q but the file is %s.patch", line, val, name)
				}
			case "rules":
				rules, err := parseRules(val)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", line, err)
				}
				f.Rules = rules
			case "models":
				f.Models = val
			case "run", "sample":
				if err := CheckRun(val); err != nil {
					return nil, fmt.Errorf("line %d: %s: %w", line, key, err)
				}
				if key == "run" {
					f.Run = val
				} else {
					f.Sample = val
				}
			}
			continue
		}
		inHeader = false
		if strings.HasPrefix(text, "+++ ") {
			file, err := diffPath(text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			f.Files = append(f.Files, file)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for len(f.Notes) > 0 && f.Notes[len(f.Notes)-1] == "" {
		f.Notes = f.Notes[:len(f.Notes)-1]
	}
	var missing []string
	for _, k := range []string{"fault", "rules", "models", "run"} {
		if !seen[k] {
			missing = append(missing, "# "+k+":")
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("header lacks %s (see kernel/faults/README.md)", strings.Join(missing, ", "))
	}
	if len(f.Files) == 0 {
		return nil, fmt.Errorf("no unified diff after the header (no +++ line)")
	}
	return f, nil
}

// parseRules reads "R4", "R8 R6", "R8, R6": rule ids of the contract.
func parseRules(s string) ([]string, error) {
	known := map[string]bool{}
	for _, r := range verdict.Rules {
		known[r] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if !known[w] {
			return nil, fmt.Errorf("rules: %q is not a rule of CONTRACT.md (R1 … R%d)", w, len(verdict.Rules))
		}
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("rules: no rule named")
	}
	return out, nil
}

// diffPath is the tree-relative file of a "+++ b/path" line (-p1).
func diffPath(line string) (string, error) {
	p := strings.TrimPrefix(line, "+++ ")
	if i := strings.IndexByte(p, '\t'); i >= 0 {
		p = p[:i]
	}
	_, rel, ok := strings.Cut(p, "/")
	if !ok || rel == "" {
		return "", fmt.Errorf("%q: the diff must be relative to the tree with one leading directory (b/layer4_5/...)", line)
	}
	clean := filepath.Clean(rel)
	if filepath.IsAbs(rel) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%q points outside the tree", line)
	}
	return clean, nil
}

// Load reads every NAME.patch of dir, sorted by name.
func Load(dir string) ([]*Fault, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.patch"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no fault patches (*.patch) in %s", dir)
	}
	sort.Strings(paths)
	var out []*Fault
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		f, err := Parse(strings.TrimSuffix(filepath.Base(p), ".patch"), data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		f.Path = p
		out = append(out, f)
	}
	return out, nil
}

// Select keeps the named faults, in the order given; none named keeps all.
func Select(all []*Fault, names []string) ([]*Fault, error) {
	if len(names) == 0 {
		return all, nil
	}
	by := map[string]*Fault{}
	var known []string
	for _, f := range all {
		by[f.Name] = f
		known = append(known, f.Name)
	}
	var out []*Fault
	seen := map[string]bool{}
	for _, n := range names {
		f, ok := by[n]
		if !ok {
			return nil, fmt.Errorf("no fault %q (known: %s)", n, strings.Join(known, ", "))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, f)
		}
	}
	return out, nil
}

// SplitRun splits a go test -run expression the way the testing package
// does: at top-level '|' into alternatives, each a path of per-level
// expressions separated by '/'; neither splits inside [...] or (...), and a
// backslash escapes the next character. A test runs when every level of
// some alternative matches the corresponding part of its name.
func SplitRun(expr string) [][]string {
	var alts [][]string
	var path []string
	brackets, parens := 0, 0
	start := 0
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '[':
			brackets++
		case ']':
			if brackets > 0 {
				brackets--
			}
		case '(':
			if brackets == 0 {
				parens++
			}
		case ')':
			if brackets == 0 {
				parens--
			}
		case '\\':
			i++
		case '/', '|':
			if brackets == 0 && parens == 0 {
				path = append(path, expr[start:i])
				start = i + 1
				if expr[i] == '|' {
					alts = append(alts, path)
					path = nil
				}
			}
		}
	}
	if start > len(expr) {
		start = len(expr)
	}
	return append(alts, append(path, expr[start:]))
}

// CheckRun says what is wrong with a -run expression, if anything: every
// level of every alternative must compile and the first must name tests.
func CheckRun(expr string) error {
	if strings.TrimSpace(expr) != expr {
		return fmt.Errorf("%q: leading or trailing blanks", expr)
	}
	for i, alt := range SplitRun(expr) {
		if alt[0] == "" {
			return fmt.Errorf("%q: alternative %d selects every top-level test", expr, i+1)
		}
		for j, level := range alt {
			if _, err := regexp.Compile(level); err != nil {
				return fmt.Errorf("%q: alternative %d, level %d: %v", expr, i+1, j+1, err)
			}
		}
	}
	return nil
}

// Union is one -run expression selecting every test any of exprs selects:
// top-level alternatives are whole paths, so joining them with '|' is
// exact. Duplicates are dropped; the order is kept.
func Union(exprs []string) string {
	var out []string
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, alt := range SplitRun(e) {
			s := strings.Join(alt, "/")
			if s != "" && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return strings.Join(out, "|")
}

// CopyTree copies the Layer 4.5 tree at src into dst (which may exist),
// regular files and folders only, leaving out the faults folder itself.
func CopyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if rel == "faults" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, fi.Mode().Perm())
	})
}

// Applied is what patch said.
type Applied struct {
	Output string
	// Fuzz: some hunk matched only with fuzz, its context has changed
	// since the patch was made; the fault may no longer be what it says.
	Fuzz bool
	// Offset: some hunk moved (harmless, but the patch could be refreshed).
	Offset bool
}

// Apply applies the fault's patch to the tree at dir with
// `patch -p1 --forward --batch`; dryRun only checks that it would apply.
func Apply(ctx context.Context, f *Fault, dir string, dryRun bool) (*Applied, error) {
	args := []string{"-p1", "--forward", "--batch", "--no-backup-if-mismatch", "-d", dir, "-i", f.Path}
	if dryRun {
		args = append(args, "--dry-run")
	}
	cmd := exec.CommandContext(ctx, "patch", args...)
	out, err := cmd.CombinedOutput()
	a := &Applied{
		Output: string(out),
		Fuzz:   bytes.Contains(out, []byte(" with fuzz ")),
		Offset: bytes.Contains(out, []byte(" (offset ")),
	}
	if err != nil {
		if _, lookErr := exec.LookPath("patch"); lookErr != nil {
			return a, fmt.Errorf("the patch program is not installed (apt-get install patch): %w", lookErr)
		}
		return a, fmt.Errorf("%s does not apply to %s: %v\n%s", filepath.Base(f.Path), dir, err, strings.TrimSpace(string(out)))
	}
	return a, nil
}
