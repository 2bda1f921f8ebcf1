package kernels

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// MatrixFile is the kernel matrix's place in the repository, relative to
// its top directory.
const MatrixFile = "kernel/matrix.json"

// MatrixEntry is one kernel of the matrix the suites run on.
type MatrixEntry struct {
	// Name is how L45_MATRIX and reports call it ("6.1", "6.1-debug").
	Name string `json:"name"`
	// Kernel is a kernel spec as L45_KERNEL takes it.
	Kernel string `json:"kernel"`
	// Nightly says the nightly run includes it.
	Nightly bool `json:"nightly"`
	// Debug says it is a debug kernel (KASAN, lockdep, kmemleak, ...); it
	// must agree with the spec (source:SERIES:debug).
	Debug bool `json:"debug"`
}

type matrixFile struct {
	Kernels []MatrixEntry `json:"kernels"`
}

var matrixName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// LoadMatrix reads the matrix definition at path.
func LoadMatrix(path string) ([]MatrixEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel matrix: %w", err)
	}
	defer f.Close()
	m, err := ParseMatrix(f)
	if err != nil {
		return nil, fmt.Errorf("kernel matrix %s: %w", path, err)
	}
	return m, nil
}

// ParseMatrix reads a matrix definition: a JSON object whose "kernels"
// lists the entries. Unknown fields, missing or repeated names, kernel
// specs Parse refuses and a debug flag that disagrees with the spec are
// errors.
func ParseMatrix(r io.Reader) ([]MatrixEntry, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var mf matrixFile
	if err := dec.Decode(&mf); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the matrix object")
	}
	if len(mf.Kernels) == 0 {
		return nil, errors.New(`no "kernels"`)
	}
	seen := map[string]bool{}
	for i, e := range mf.Kernels {
		where := fmt.Sprintf("entry %d (%q)", i+1, e.Name)
		switch {
		case !matrixName.MatchString(e.Name):
			return nil, fmt.Errorf("%s: a name is letters, digits, '.', '_' and '-'", where)
		case e.Name == "nightly":
			return nil, fmt.Errorf("%s: \"nightly\" is reserved: L45_MATRIX=nightly selects the nightly entries", where)
		case seen[e.Name]:
			return nil, fmt.Errorf("%s: the name is used twice", where)
		case e.Kernel == "":
			return nil, fmt.Errorf(`%s: no "kernel" spec`, where)
		}
		seen[e.Name] = true
		p, err := Parse(e.Kernel, nil, "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		src, isSource := p.(*Source)
		if debug := isSource && src.Debug; debug != e.Debug {
			return nil, fmt.Errorf("%s: \"debug\": %v disagrees with the kernel %s (debug kernels are source:SERIES:debug)", where, e.Debug, e.Kernel)
		}
	}
	return mf.Kernels, nil
}

// SelectMatrix returns the entries named in subset, a comma-separated list
// as $L45_MATRIX takes it ("6.1,7.2"), in the matrix's order. An empty
// subset selects every entry; "nightly" selects the nightly ones. A name
// the matrix lacks is an error listing the names it has.
func SelectMatrix(m []MatrixEntry, subset string) ([]MatrixEntry, error) {
	subset = strings.TrimSpace(subset)
	if subset == "" {
		return m, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(subset, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	known := map[string]bool{"nightly": true}
	var names []string
	for _, e := range m {
		known[e.Name] = true
		names = append(names, e.Name)
	}
	var unknown []string
	for n := range want {
		if !known[n] {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("L45_MATRIX names %s, not in the kernel matrix (it has: %s, or nightly)", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	var out []MatrixEntry
	for _, e := range m {
		if want[e.Name] || want["nightly"] && e.Nightly {
			out = append(out, e)
		}
	}
	return out, nil
}

// String is the entry as a report names it: "6.1 (debian:bookworm:6.1)".
func (e MatrixEntry) String() string {
	return e.Name + " (" + e.Kernel + ")"
}
