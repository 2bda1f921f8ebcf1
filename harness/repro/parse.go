package repro

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"layer45/harness/kernels"
	"layer45/harness/repo"
	"layer45/vmimages/agent/proto"
	"layer45/vmimages/guest"
)

// FileError is a mistake in a repro file: where it is and what is
// allowed instead. Parse returns them joined (errors.As finds the first).
type FileError struct {
	File  string
	Line  int    // 0 when the line is unknown
	Field string // e.g. steps[2].guest (lists count from 1); may be empty
	Msg   string
}

func (e *FileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Parse reads the repro file at file and checks it, the host files it
// names and its tree included.
func Parse(file string) (*File, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &FileError{File: file, Msg: err.Error()}
	}
	f, err := ParseBytes(file, data)
	if err != nil {
		return nil, err
	}
	if f.Dir, err = filepath.Abs(filepath.Dir(file)); err != nil {
		return nil, &FileError{File: file, Msg: err.Error()}
	}
	if err := f.checkHost(); err != nil {
		return nil, err
	}
	return f, nil
}

// ParseBytes checks a repro file's text; name is the file's for messages.
// Host files are not looked at (see Parse).
func ParseBytes(name string, data []byte) (*File, error) {
	f := &File{Name: name, Source: data}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(f)
	if errors.Is(err, io.EOF) {
		return nil, &FileError{File: name, Msg: "the file is empty; l45 repro --example prints a template"}
	}
	if err != nil {
		return nil, decodeErrors(name, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, decodeErrors(name, err)
	}
	c := &checker{f: f, root: doc.Content[0]}
	c.check()
	return f, c.err()
}

var (
	lineMsg      = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	badDuration  = regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into time.Duration$")
)

// decodeErrors turns the YAML decoder's errors into FileErrors, naming
// the fields a misspelt one could have been.
func decodeErrors(name string, err error) error {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var errs []error
	for _, m := range msgs {
		fe := &FileError{File: name, Msg: strings.TrimPrefix(m, "yaml: ")}
		if sub := lineMsg.FindStringSubmatch(m); sub != nil {
			fe.Line, _ = strconv.Atoi(sub[1])
			fe.Msg = sub[2]
		}
		if sub := unknownField.FindStringSubmatch(fe.Msg); sub != nil {
			fe.Field = sub[1]
			what, allowed := describeType(sub[2])
			fe.Msg = fmt.Sprintf("unknown field in %s; it takes: %s", what, allowed)
		} else if sub := badDuration.FindStringSubmatch(fe.Msg); sub != nil {
			fe.Msg = fmt.Sprintf("%q is not a duration: write it like 30s, 2m or 1m30s", sub[1])
		}
		errs = append(errs, fe)
	}
	return errors.Join(errs...)
}

// schemaTypes name, for messages, each type of the file's schema.
var schemaTypes = map[reflect.Type]string{
	reflect.TypeFor[File]():       "the file",
	reflect.TypeFor[GuestSet]():   "a guest (server, client)",
	reflect.TypeFor[Module]():     "a module",
	reflect.TypeFor[Copy]():       "a file to copy",
	reflect.TypeFor[Step]():       "a step",
	reflect.TypeFor[Criteria]():   "reproduced",
	reflect.TypeFor[Condition]():  "a condition",
	reflect.TypeFor[CrashCond]():  "a crash condition",
	reflect.TypeFor[ExitCond]():   "an exit condition",
	reflect.TypeFor[OutputCond](): "an output condition",
	reflect.TypeFor[DNSCond]():    "a dns condition",
	reflect.TypeFor[WireCond]():   "a wire condition",
}

// describeType names the schema type the decoder calls typeName and the
// fields it takes.
func describeType(typeName string) (what, fields string) {
	for t, what := range schemaTypes {
		if t.String() == typeName {
			return what, strings.Join(yamlFields(t), ", ")
		}
	}
	return typeName, "?"
}

func yamlFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		if tag := f.Tag.Get("yaml"); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// checker checks what the decoder cannot: required fields, allowed values,
// references between steps and conditions. root is the file's mapping,
// for the lines of the fields it complains about.
type checker struct {
	f    *File
	root *yaml.Node
	errs []*FileError
}

// at is a field's place: keys and (0-based) list indexes.
type at []any

func (p at) String() string {
	var b strings.Builder
	for _, e := range p {
		switch e := e.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", e+1)
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, e)
		}
	}
	return b.String()
}

// find walks to the field at p and returns it, or the nearest enclosing
// field that exists and false. An empty value stands at its key's line.
func (c *checker) find(p at) (*yaml.Node, bool) {
	n := c.root
	for _, e := range p {
		var next *yaml.Node
		switch e := e.(type) {
		case int:
			if n.Kind == yaml.SequenceNode && e < len(n.Content) {
				next = n.Content[e]
			}
		case string:
			for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == e {
					next = n.Content[i+1]
					if next.Tag == "!!null" {
						next = n.Content[i]
					}
				}
			}
		}
		if next == nil {
			return n, false
		}
		n = next
	}
	return n, true
}

// line is the line of the field at p, or of the nearest enclosing one
// (a missing field is reported where its parent is).
func (c *checker) line(p at) int {
	if c.root == nil {
		return 0
	}
	n, _ := c.find(p)
	return n.Line
}

// has says whether the mapping at p has the key.
func (c *checker) has(p at, key string) bool {
	_, ok := c.find(append(p[:len(p):len(p)], key))
	return ok
}

func (c *checker) failf(p at, format string, args ...any) {
	c.errs = append(c.errs, &FileError{File: c.f.Name, Line: c.line(p), Field: p.String(), Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error {
	sort.SliceStable(c.errs, func(i, j int) bool { return c.errs[i].Line < c.errs[j].Line })
	var errs []error
	for _, e := range c.errs {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

var (
	moduleName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	paramName  = regexp.MustCompile(`^[A-Za-z0-9_.]+$`)
	stepName   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	portSpec   = regexp.MustCompile(`^(udp|tcp)/(\d+)$`)
)

// DefaultStepTimeout bounds a foreground step that names no timeout.
const DefaultStepTimeout = 60 * time.Second

func (c *checker) check() {
	f := c.f
	if f.Kernel != "" {
		if _, err := kernels.Parse(f.Kernel, nil, ""); err != nil {
			c.failf(at{"kernel"}, "%v", err)
		}
	}
	switch {
	case f.CPUs == 0:
		f.CPUs = 1
	case f.CPUs < 1 || f.CPUs > 8:
		c.failf(at{"cpus"}, "%d CPUs: a guest has 1 to 8", f.CPUs)
	}
	for _, g := range []string{Server, Client} {
		c.checkGuest(g, f.Guest(g))
	}
	names := map[string]int{}
	for i := range f.Steps {
		c.checkStep(i, &f.Steps[i], names)
	}
	c.checkReproduced()
}

func (c *checker) checkGuest(name string, g *GuestSet) {
	for i := range g.Modules {
		m := &g.Modules[i]
		p := at{name, "modules", i}
		m.Line = c.line(p)
		switch {
		case m.Name == "":
			c.failf(p, "a module needs a name: one of the tree's customizations/ (tag, drop, error, crash_test, ...)")
		case m.Name == guest.CoreModule:
			c.failf(append(p, "name"), "%s is Layer 4.5's core: every guest loads it first (unless the kernel has it built in); name only customization modules", m.Name)
		case !moduleName.MatchString(m.Name):
			c.failf(append(p, "name"), "%q is not a module name (letters, digits, _ and -)", m.Name)
		}
		for k, v := range m.Params {
			if !paramName.MatchString(k) {
				c.failf(append(p, "params"), "%q is not a module parameter name (letters, digits, _)", k)
			}
			if strings.ContainsAny(v, "\"\n") {
				c.failf(append(p, "params", k), "a parameter value cannot hold a double quote or a line break")
			}
		}
	}
	for i := range g.Files {
		cp := &g.Files[i]
		p := at{name, "files", i}
		cp.Line = c.line(p)
		if cp.From == "" {
			c.failf(p, "from: missing: the host file to copy (relative to the repro file)")
		}
		if !path.IsAbs(cp.To) || path.Clean(cp.To) != cp.To {
			c.failf(append(p, "to"), "%q: the guest path must be absolute and clean, e.g. /tmp/payload.bin", cp.To)
		}
	}
}

func (c *checker) checkStep(i int, s *Step, names map[string]int) {
	p := at{"steps", i}
	s.Line = c.line(p)
	if s.Name == "" {
		s.Name = fmt.Sprintf("step%d", i+1)
	}
	if !stepName.MatchString(s.Name) {
		c.failf(append(p, "name"), "%q: a step name is letters, digits, '.', '_' and '-'", s.Name)
	}
	if j, dup := names[s.Name]; dup {
		c.failf(append(p, "name"), "%q already names step %d", s.Name, j+1)
	}
	names[s.Name] = i
	if s.Guest != Server && s.Guest != Client {
		if s.Guest == "" {
			c.failf(p, "guest: missing: client or server")
		} else {
			c.failf(append(p, "guest"), "%q is not a guest: use client or server", s.Guest)
		}
	}
	switch {
	case len(s.Run) == 0 && s.Sleep == 0:
		c.failf(p, "a step needs run (a command line) or sleep (a duration)")
	case len(s.Run) > 0 && s.Sleep != 0:
		c.failf(append(p, "sleep"), "a step either runs a command or sleeps, not both")
	case s.Sleep < 0:
		c.failf(append(p, "sleep"), "a negative sleep")
	case len(s.Run) > 0 && s.Run[0] == "":
		c.failf(append(p, "run"), "the program is empty")
	}
	if s.Background && len(s.Run) == 0 {
		c.failf(append(p, "background"), "only a step that runs a command can run in the background")
	}
	if s.Listening != "" {
		m := portSpec.FindStringSubmatch(s.Listening)
		port := 0
		if m != nil {
			port, _ = strconv.Atoi(m[2])
		}
		switch {
		case !s.Background:
			c.failf(append(p, "listening"), "only a background step can be waited for until it listens")
		case m == nil || port < 1 || port > 65535:
			c.failf(append(p, "listening"), "%q: write udp/PORT or tcp/PORT, e.g. udp/53", s.Listening)
		}
	}
	switch {
	case s.Timeout != 0 && (s.Background || len(s.Run) == 0):
		c.failf(append(p, "timeout"), "only a foreground command has a timeout (a background one runs until the last step is done)")
	case s.Timeout < 0:
		c.failf(append(p, "timeout"), "a negative timeout")
	case s.Timeout == 0:
		s.Timeout = DefaultStepTimeout
	}
}

// conditionKinds are the keys of a condition, one of which it must have.
var conditionKinds = []string{"crash", "exit", "output", "dns", "wire"}

func (c *checker) checkReproduced() {
	r := &c.f.Reproduced
	switch r.When {
	case "":
		r.When = "any"
	case "any", "all":
	default:
		c.failf(at{"reproduced", "when"}, "%q: use any (one condition is enough) or all", r.When)
	}
	if len(r.Of) == 0 {
		c.failf(at{"reproduced"}, "of: missing: list what counts as reproduced (crash, exit, output, dns or wire conditions; see l45 repro --example)")
	}
	for i := range r.Of {
		cond := &r.Of[i]
		p := at{"reproduced", "of", i}
		cond.Line = c.line(p)
		var kinds []string
		for _, k := range conditionKinds {
			if c.has(p, k) {
				kinds = append(kinds, k)
			}
		}
		if len(kinds) != 1 {
			c.failf(p, "a condition has exactly one of %s (it has %s); not: true turns it round", strings.Join(conditionKinds, ", "), orNone(kinds))
			continue
		}
		if kinds[0] == "crash" && cond.Crash == nil {
			cond.Crash = &CrashCond{} // "crash:" alone: any crash
		}
		c.checkCondition(p, cond)
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func (c *checker) checkCondition(p at, cond *Condition) {
	switch {
	case cond.Crash != nil:
		switch cond.Crash.Guest {
		case "":
			cond.Crash.Guest = "any"
		case "any", Server, Client:
		default:
			c.failf(append(p, "crash", "guest"), "%q is not a guest: use client, server or any", cond.Crash.Guest)
		}
	case cond.Exit != nil:
		c.checkStepRef(append(p, "exit"), cond.Exit.Step)
		if cond.Exit.Status == nil {
			c.failf(append(p, "exit"), "status: missing: the exit status that counts (-1: killed by a signal or timed out)")
		}
	case cond.Output != nil:
		o := cond.Output
		c.checkStepRef(append(p, "output"), o.Step)
		switch o.Stream {
		case "":
			o.Stream = "any"
		case "any", "stdout", "stderr":
		default:
			c.failf(append(p, "output", "stream"), "%q: use stdout, stderr or any", o.Stream)
		}
		re, err := regexp.Compile(o.Regexp)
		switch {
		case o.Regexp == "":
			c.failf(append(p, "output"), "regexp: missing: what the output must match (Go regexp syntax)")
		case err != nil:
			c.failf(append(p, "output", "regexp"), "not a regexp: %v", err)
		}
		o.re = re
	case cond.DNS != nil:
		if cond.DNS.Name == "" {
			c.failf(append(p, "dns"), "name: missing: the name whose answer counts, e.g. probe.layer45.test")
		}
	case cond.Wire != nil:
		w := cond.Wire
		switch {
		case (w.Text == "") == (w.Hex == ""):
			c.failf(append(p, "wire"), "give the bytes as text or as hex (exactly one)")
		case w.Hex != "":
			b, err := hex.DecodeString(strings.ReplaceAll(w.Hex, " ", ""))
			if err != nil {
				c.failf(append(p, "wire", "hex"), "not hex: %v", err)
			}
			w.bytes = b
		default:
			w.bytes = []byte(w.Text)
		}
		if w.Proto != "" && w.Proto != "udp" && w.Proto != "tcp" {
			c.failf(append(p, "wire", "proto"), "%q: use udp or tcp (or leave it out for both)", w.Proto)
		}
		if w.Port < 0 || w.Port > 65535 {
			c.failf(append(p, "wire", "port"), "%d is not a port", w.Port)
		}
	}
}

func (c *checker) checkStepRef(p at, name string) {
	s := c.f.Step(name)
	switch {
	case name == "":
		c.failf(p, "step: missing: the name of the step whose program counts")
	case s == nil:
		var names []string
		for _, s := range c.f.Steps {
			if len(s.Run) > 0 {
				names = append(names, s.Name)
			}
		}
		c.failf(append(p, "step"), "no step is named %q (steps that run a command: %s)", name, orNone(names))
	case len(s.Run) == 0:
		c.failf(append(p, "step"), "step %q only sleeps: it has no exit status or output", name)
	}
}

// TreeDir is the Layer 4.5 tree the file names, absolute; the project's
// kernel/ when it names none.
func (f *File) TreeDir() (string, error) {
	if f.Tree == "" {
		root, err := repo.Root()
		if err != nil {
			return "", err
		}
		return filepath.Join(root, "kernel"), nil
	}
	if filepath.IsAbs(f.Tree) {
		return f.Tree, nil
	}
	return filepath.Join(f.Dir, f.Tree), nil
}

// HostFile is the host path of a file to copy.
func (f *File) HostFile(c Copy) string {
	if filepath.IsAbs(c.From) {
		return c.From
	}
	return filepath.Join(f.Dir, c.From)
}

// Input reads a host file to copy in (Runner.Input for a first run).
func (f *File) Input(_ string, c Copy) ([]byte, error) {
	return os.ReadFile(f.HostFile(c))
}

// checkHost checks what the file names on the host: its tree and the
// files to copy.
func (f *File) checkHost() error {
	c := &checker{f: f}
	var doc yaml.Node
	if yaml.Unmarshal(f.Source, &doc) == nil && len(doc.Content) > 0 {
		c.root = doc.Content[0]
	}
	if f.Tree != "" {
		dir, _ := f.TreeDir()
		if err := repo.CheckTree(dir); err != nil {
			c.failf(at{"tree"}, "%s is not a Layer 4.5 tree (relative paths are relative to the repro file): %v", dir, err)
		}
	}
	for _, g := range []string{Server, Client} {
		for i, cp := range f.Guest(g).Files {
			if cp.From == "" {
				continue
			}
			fi, err := os.Stat(f.HostFile(cp))
			switch {
			case err != nil:
				c.failf(at{g, "files", i, "from"}, "%v", err)
			case !fi.Mode().IsRegular():
				c.failf(at{g, "files", i, "from"}, "%s is not a regular file", f.HostFile(cp))
			case fi.Size() > proto.MaxFile:
				c.failf(at{g, "files", i, "from"}, "%s has %d bytes; a guest takes files of up to %d", f.HostFile(cp), fi.Size(), proto.MaxFile)
			}
		}
	}
	return c.err()
}
