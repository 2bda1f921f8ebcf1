// Package repro runs a bug report written as a small YAML file (the schema
// is below, a template is Example): the kernel, the Layer 4.5 tree, the
// customization modules each guest loads, the programs a server and a
// client guest run, and what counts as reproduced. A run boots a fresh
// pair, runs the steps, judges the conditions and writes one bundle with
// the evidence and everything needed to replay it without fetching
// anything (see Runner and OpenBundle). l45 repro is its command.
package repro

import (
	"regexp"
	"time"
)

// The guests' addresses on their one link, as in the suites.
const (
	ServerIP = "10.0.0.20"
	ClientIP = "10.0.0.40"
)

// Guest names, as steps and conditions spell them.
const (
	Server = "server"
	Client = "client"
)

// File is a repro file.
type File struct {
	// Title says what the bug is, for the bundle's README.
	Title string `yaml:"title"`
	// Kernel is a kernel spec as $L45_KERNEL takes it; empty is the
	// default kernel.
	Kernel string `yaml:"kernel"`
	// Tree is the Layer 4.5 tree (laid out like kernel/), relative to the
	// file's folder; empty is the project's kernel/.
	Tree string `yaml:"tree"`
	// CPUs each guest has (default 1).
	CPUs   int      `yaml:"cpus"`
	Server GuestSet `yaml:"server"`
	Client GuestSet `yaml:"client"`
	// Steps run in order, each in one guest.
	Steps      []Step   `yaml:"steps"`
	Reproduced Criteria `yaml:"reproduced"`

	// Name is the file as named to Parse, for messages; Dir resolves
	// its relative paths; Source is its text, as the bundle keeps it.
	Name   string `yaml:"-"`
	Dir    string `yaml:"-"`
	Source []byte `yaml:"-"`
}

// GuestSet is what one guest gets before the steps run.
type GuestSet struct {
	// Modules are loaded in order, after Layer 4.5's core.
	Modules []Module `yaml:"modules"`
	// Files are copied in from the host.
	Files []Copy `yaml:"files"`
}

// Module is a customization module of the tree (customizations/NAME.c).
type Module struct {
	Name   string            `yaml:"name"`
	Params map[string]string `yaml:"params"`
	Line   int               `yaml:"-"`
}

// Copy is a host file put into a guest.
type Copy struct {
	// From is the host file, relative to the repro file's folder.
	From string `yaml:"from"`
	// To is the absolute path in the guest.
	To         string `yaml:"to"`
	Executable bool   `yaml:"executable"`
	Line       int    `yaml:"-"`
}

// Step is one program run in a guest (or a pause).
type Step struct {
	// Name is how conditions refer to the step; default "stepN" (N counts
	// from 1).
	Name  string `yaml:"name"`
	Guest string `yaml:"guest"`
	// Run is the command line; a program without a slash is looked up in
	// the guest's PATH.
	Run []string `yaml:"run"`
	// Sleep pauses instead of running anything.
	Sleep time.Duration `yaml:"sleep"`
	// Background starts the program and goes on; it is stopped (SIGTERM)
	// after the last step.
	Background bool `yaml:"background"`
	// Listening (background only) waits until the program has bound a
	// port: "udp/53", "tcp/7000".
	Listening string `yaml:"listening"`
	// Timeout (foreground only) kills the program after that long
	// (default 60s).
	Timeout time.Duration `yaml:"timeout"`
	Line    int           `yaml:"-"`
}

// Criteria say what counts as the bug showing (the file's reproduced).
type Criteria struct {
	// When is "any" (the default) or "all" of the conditions.
	When string      `yaml:"when"`
	Of   []Condition `yaml:"of"`
}

// Condition is one observation, exactly one of its kinds; Not turns it
// round (reproduced when the observation is absent).
type Condition struct {
	Crash  *CrashCond  `yaml:"crash"`
	Exit   *ExitCond   `yaml:"exit"`
	Output *OutputCond `yaml:"output"`
	DNS    *DNSCond    `yaml:"dns"`
	Wire   *WireCond   `yaml:"wire"`
	Not    bool        `yaml:"not"`
	Line   int         `yaml:"-"`
}

// CrashCond holds when a guest's kernel reported a crash (oops, BUG,
// WARNING, KASAN, lockdep, hung task, ...) whose title contains Title.
type CrashCond struct {
	// Guest is client, server or any (the default).
	Guest string `yaml:"guest"`
	Title string `yaml:"title"`
}

// ExitCond holds when a step's program ended with Status (-1: killed by
// a signal or at its timeout).
type ExitCond struct {
	Step   string `yaml:"step"`
	Status *int   `yaml:"status"`
}

// OutputCond holds when a step's output matches Regexp (Go syntax).
type OutputCond struct {
	Step string `yaml:"step"`
	// Stream is stdout, stderr or any (the default).
	Stream string `yaml:"stream"`
	Regexp string `yaml:"regexp"`
	re     *regexp.Regexp
}

// DNSCond holds when a DNS response on the link answers Name (with
// Answer among its records' data, when set: "10.9.8.7").
type DNSCond struct {
	Name   string `yaml:"name"`
	Answer string `yaml:"answer"`
}

// WireCond holds when a UDP datagram or a TCP flow on the link carries
// the bytes Text or Hex, optionally only of Proto and to or from Port.
type WireCond struct {
	Text  string `yaml:"text"`
	Hex   string `yaml:"hex"`
	Proto string `yaml:"proto"`
	Port  int    `yaml:"port"`
	bytes []byte
}

// Guest is the named guest's part of the file.
func (f *File) Guest(name string) *GuestSet {
	if name == Server {
		return &f.Server
	}
	return &f.Client
}

// Step returns the step named name, or nil.
func (f *File) Step(name string) *Step {
	for i := range f.Steps {
		if f.Steps[i].Name == name {
			return &f.Steps[i]
		}
	}
	return nil
}
