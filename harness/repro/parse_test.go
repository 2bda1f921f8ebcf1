package repro

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Each testdata/NAME.yaml is a file with mistakes; NAME.golden is what
// l45 repro says about them: every one, with its line and what is allowed.
func TestMistakesAreNamedWithTheirLine(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := Parse(file)
			require.Error(t, err)
			var fe *FileError
			require.ErrorAs(t, err, &fe)
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			got := err.Error() + "\n"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test -run TestMistakes -update ./harness/repro to write it")
			require.Equal(t, string(want), got)
		})
	}
}

func TestExampleIsAValidFileWithDefaults(t *testing.T) {
	f, err := ParseBytes("example.yaml", []byte(Example))
	require.NoError(t, err)
	require.Equal(t, 1, f.CPUs)
	require.Equal(t, "any", f.Reproduced.When)
	require.Len(t, f.Steps, 4)
	require.Equal(t, DefaultStepTimeout, f.Step("dig").Timeout, "a foreground step gets the default timeout")
	require.Equal(t, 30*time.Second, f.Step("send").Timeout)
	require.Equal(t, "error", f.Client.Modules[0].Name)
	require.Equal(t, "-1", f.Client.Modules[0].Params["errno"], "numbers are taken as the text insmod gets")
	require.Equal(t, "dest_port=7112 errno=-1 on_recv=0 protocol=6 task_tgid=l45net", paramString(f.Client.Modules[0].Params))
	for _, c := range f.Reproduced.Of {
		require.NotZero(t, c.Line)
	}
	require.Equal(t, "any", f.Reproduced.Of[0].Crash.Guest)
}

func TestSmallFiles(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		err        string // "" when the file is fine
		check      func(t *testing.T, f *File)
	}{
		{name: "empty", text: "", err: "x.yaml: the file is empty; l45 repro --example prints a template"},
		{name: "not a mapping", text: "- a\n", err: "x.yaml:1: cannot unmarshal !!seq into repro.File"},
		{name: "no conditions", text: "title: t\n", err: "x.yaml:1: reproduced: of: missing"},
		{name: "syntax", text: "steps: [\n", err: "x.yaml:1: did not find expected node content"},
		{
			name: "a bare crash is any crash; names default to stepN",
			text: "steps:\n  - guest: server\n    sleep: 1s\n  - guest: client\n    run: [true]\nreproduced:\n  of:\n    - crash:\n    - exit: {step: step2, status: 0}\n      not: true\n",
			check: func(t *testing.T, f *File) {
				require.Equal(t, &CrashCond{Guest: "any"}, f.Reproduced.Of[0].Crash)
				require.Equal(t, "step2", f.Steps[1].Name)
				require.True(t, f.Reproduced.Of[1].Not)
				require.Equal(t, 9, f.Reproduced.Of[1].Line)
			},
		},
		{
			name: "a step that only sleeps has no output",
			text: "steps:\n  - {name: nap, guest: client, sleep: 1s}\nreproduced:\n  of:\n    - output: {step: nap, regexp: x}\n",
			err:  `x.yaml:5: reproduced.of[1].output.step: step "nap" only sleeps: it has no exit status or output`,
		},
		{
			name: "wire bytes",
			text: "reproduced:\n  of:\n    - wire: {hex: \"de ad\", port: 53}\n",
			check: func(t *testing.T, f *File) {
				require.Equal(t, []byte{0xde, 0xad}, f.Reproduced.Of[0].Wire.bytes)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseBytes("x.yaml", []byte(tc.text))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				var fe *FileError
				require.True(t, errors.As(err, &fe), "%T", err)
				return
			}
			require.NoError(t, err)
			tc.check(t, f)
		})
	}
}

// Paths are relative to the repro file; the tree must look like kernel/.
func TestHostPathsAreRelativeToTheFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "payload.bin"), []byte("x"), 0o644))
	file := filepath.Join(dir, "bug.yaml")
	text := "tree: no-tree\nclient:\n  files:\n    - {from: payload.bin, to: /tmp/p}\nreproduced:\n  of: [crash: {}]\n"
	require.NoError(t, os.WriteFile(file, []byte(text), 0o644))
	_, err := Parse(file)
	require.ErrorContains(t, err, "bug.yaml:1: tree: "+filepath.Join(dir, "no-tree")+" is not a Layer 4.5 tree")

	require.NoError(t, os.WriteFile(file, []byte(strings.TrimPrefix(text, "tree: no-tree\n")), 0o644))
	f, err := Parse(file)
	require.NoError(t, err)
	data, err := f.Input(Client, f.Client.Files[0])
	require.NoError(t, err)
	require.Equal(t, "x", string(data))
	tree, err := f.TreeDir()
	require.NoError(t, err)
	require.Equal(t, "kernel", filepath.Base(tree), "no tree: the project's kernel/")
}
