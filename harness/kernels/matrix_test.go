package kernels

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTheRepositoryMatrixLoads(t *testing.T) {
	m, err := LoadMatrix(filepath.Join("..", "..", MatrixFile))
	require.NoError(t, err)
	byName := map[string]MatrixEntry{}
	for _, e := range m {
		byName[e.Name] = e
	}
	for _, n := range []string{"5.10", "6.1", "6.12", "7.2"} {
		require.Contains(t, byName, n)
		require.True(t, byName[n].Nightly, n)
		require.False(t, byName[n].Debug, n)
		require.True(t, strings.HasPrefix(byName[n].Kernel, "debian:"), "%s is a prebuilt kernel", n)
	}
	var debug []string
	for _, e := range m {
		if e.Debug {
			debug = append(debug, e.Kernel)
		}
	}
	require.Equal(t, []string{"source:6.1:debug"}, debug)
}

func parse(t *testing.T, s string) ([]MatrixEntry, error) {
	t.Helper()
	return ParseMatrix(strings.NewReader(s))
}

func TestMatrixErrorsAreClear(t *testing.T) {
	for doc, want := range map[string]string{
		`{"kernels": [{"name": "a", "kernel": "debian:sid", "nightly": true, "flaky": true}]}`: `unknown field "flaky"`,
		`{"kernel": []}`:  `unknown field "kernel"`,
		`{"kernels": []}`: `no "kernels"`,
		`{"kernels": [{"name": "a", "kernel": "gentoo:9"}]}`:                                             `entry 1 ("a"): unknown kernel "gentoo:9"`,
		`{"kernels": [{"name": "a", "kernel": "debian:sid"}, {"name": "a", "kernel": "debian:trixie"}]}`: `entry 2 ("a"): the name is used twice`,
		`{"kernels": [{"name": "", "kernel": "debian:sid"}]}`:                                            `entry 1 (""): a name is`,
		`{"kernels": [{"name": "x", "kernel": ""}]}`:                                                     `no "kernel" spec`,
		`{"kernels": [{"name": "x", "kernel": "source:6.1:debug"}]}`:                                     `"debug": false disagrees with the kernel source:6.1:debug`,
		`{"kernels": [{"name": "x", "kernel": "debian:sid", "debug": true}]}`:                            `"debug": true disagrees`,
		`{"kernels": [{"name": "nightly", "kernel": "debian:sid"}]}`:                                     `"nightly" is reserved`,
		`{"kernels": [{"name": "x", "kernel": "debian:sid"}]} {}`:                                        `trailing data`,
		`{"kernels": [{"name": "x", "kernel": "debian:sid", "nightly": "yes"}]}`:                         `cannot unmarshal string`,
	} {
		_, err := parse(t, doc)
		require.ErrorContains(t, err, want, doc)
	}
	_, err := LoadMatrix(filepath.Join(t.TempDir(), "none.json"))
	require.ErrorContains(t, err, "kernel matrix")
	bad := filepath.Join(t.TempDir(), "m.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"kernels": [{"name": "a"}]}`), 0o644))
	_, err = LoadMatrix(bad)
	require.ErrorContains(t, err, bad)
}

func TestSelectMatrix(t *testing.T) {
	m, err := parse(t, `{"kernels": [
		{"name": "5.10", "kernel": "debian:bullseye:5.10", "nightly": true},
		{"name": "6.1", "kernel": "debian:bookworm", "nightly": true},
		{"name": "extra", "kernel": "debian:bookworm:6.12"},
		{"name": "6.1-debug", "kernel": "source:6.1:debug", "nightly": true, "debug": true}]}`)
	require.NoError(t, err)
	names := func(s []MatrixEntry) (out []string) {
		for _, e := range s {
			out = append(out, e.Name)
		}
		return out
	}
	all, err := SelectMatrix(m, "")
	require.NoError(t, err)
	require.Len(t, all, 4)
	sub, err := SelectMatrix(m, " 6.1-debug, 5.10,5.10 ")
	require.NoError(t, err)
	require.Equal(t, []string{"5.10", "6.1-debug"}, names(sub), "matrix order, each once")
	nightly, err := SelectMatrix(m, "nightly")
	require.NoError(t, err)
	require.Equal(t, []string{"5.10", "6.1", "6.1-debug"}, names(nightly))
	_, err = SelectMatrix(m, "6.1,7.3,4.19")
	require.ErrorContains(t, err, "L45_MATRIX names 4.19, 7.3, not in the kernel matrix (it has: 5.10, 6.1, extra, 6.1-debug, or nightly)")
}
