// Package artifacts is the one place the harness writes evidence: console
// logs, QEMU command lines, kernel logs, pcaps. Each test gets a folder;
// a passing test's folder is removed unless L45_KEEP=1, a failing test's
// folder stays and its path is recorded as the test attribute AttrEvidence.
package artifacts

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Test attributes (testing.T.Attr, carried by go test -json) with the
// structured facts of a guest test; the harness writes them, the verdict
// reads them.
const (
	// AttrEvidence is the evidence folder kept for a failed test.
	AttrEvidence = "l45.evidence"
	// AttrKernel is the release of a kernel the test's guests booted.
	AttrKernel = "l45.kernel"
	// AttrCrash is the title of a kernel report that failed the test.
	AttrCrash = "l45.crash"
	// AttrInfra says the test failed because the harness could not do its
	// job (no QEMU, a kernel that cannot be built, ...), not because of
	// Layer 4.5.
	AttrInfra = "l45.infra"
)

// Root is where evidence folders go: $L45_ARTIFACTS, else _artifacts at the
// top of the repository (found from the working directory), else the
// system's temporary directory.
func Root() string {
	if d := os.Getenv("L45_ARTIFACTS"); d != "" {
		return d
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; d != filepath.Dir(d); d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				return filepath.Join(d, "_artifacts")
			}
		}
	}
	return filepath.Join(os.TempDir(), "l45-artifacts")
}

var (
	runOnce sync.Once
	runID   string
)

// RunID names this test process's run; all its folders share it. Processes
// of one `go test ./...` are told apart by their pid.
func RunID() string {
	runOnce.Do(func() {
		runID = fmt.Sprintf("%s-%d", time.Now().Format("20060102-150405"), os.Getpid())
	})
	return runID
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Dir is one test's evidence folder.
type Dir struct {
	path string
}

// New makes the folder for the named test (subtest slashes become nested
// folders).
func New(testName string) (*Dir, error) {
	var parts []string
	for _, p := range strings.Split(testName, "/") {
		parts = append(parts, unsafeChars.ReplaceAllString(p, "_"))
	}
	p := filepath.Join(append([]string{Root(), RunID()}, parts...)...)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return nil, fmt.Errorf("cannot make the evidence folder (set L45_ARTIFACTS to a writable directory): %w", err)
	}
	return &Dir{path: p}, nil
}

// Path is the folder.
func (d *Dir) Path() string { return d.path }

// File is the path of name inside the folder.
func (d *Dir) File(name string) string { return filepath.Join(d.path, name) }

// Create opens name for writing.
func (d *Dir) Create(name string) (*os.File, error) {
	f, err := os.Create(d.File(name))
	if err != nil {
		return nil, fmt.Errorf("cannot write evidence file: %w", err)
	}
	return f, nil
}

// WriteFile writes name at once.
func (d *Dir) WriteFile(name string, data []byte) error {
	if err := os.WriteFile(d.File(name), data, 0o644); err != nil {
		return fmt.Errorf("cannot write evidence file: %w", err)
	}
	return nil
}

// Keep reports whether passing tests keep their evidence (L45_KEEP=1).
func Keep() bool { return os.Getenv("L45_KEEP") == "1" }

// Finish removes the folder when the test passed and evidence is not asked
// for; it returns the path when the folder stays.
func (d *Dir) Finish(failed bool) (kept string) {
	if failed || Keep() {
		return d.path
	}
	os.RemoveAll(d.path)
	// Remove the run folder too once it is empty; errors mean it is not.
	os.Remove(filepath.Dir(d.path))
	return ""
}

// WriteSummary writes a file that describes a whole run (the per-rule
// verdict, say) at the top of the evidence root and returns its path.
func WriteSummary(name string, data []byte) (string, error) {
	root := Root()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("cannot make the evidence root (set L45_ARTIFACTS to a writable directory): %w", err)
	}
	p := filepath.Join(root, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return "", fmt.Errorf("cannot write run summary: %w", err)
	}
	return p, nil
}
