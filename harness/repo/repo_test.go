package repo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"layer45/vmimages/guest"
)

// writeTree makes a tree holding files (relative path -> content).
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for f, data := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// kernelLayout is a copy of kernel/'s layout.
var kernelLayout = map[string]string{
	"Makefile":                         "",
	"layer4_5/Kbuild":                  "",
	"include/layer4_5/customization.h": "",
	"customizations/Kbuild":            "",
}

func TestKernelTree(t *testing.T) {
	t.Setenv("L45_TREE", "")
	own, err := KernelTree()
	if err != nil || filepath.Base(own) != "kernel" {
		t.Fatalf("default tree = %q, %v; want the repository's kernel/", own, err)
	}
	if err := CheckTree(own); err != nil {
		t.Fatalf("the project's own tree fails its check: %v", err)
	}

	copyDir := writeTree(t, kernelLayout)
	t.Setenv("L45_TREE", copyDir)
	if got, err := KernelTree(); err != nil || got != copyDir {
		t.Fatalf("L45_TREE tree = %q, %v", got, err)
	}
	os.Remove(filepath.Join(copyDir, "include/layer4_5/customization.h"))
	_, err = KernelTree()
	var te *TreeError
	if !errors.As(err, &te) || te.Dir != copyDir {
		t.Fatalf("a tree without the header: %v", err)
	}
}

func TestLoadTree(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	projectCust := filepath.Join(root, "kernel", "customizations")
	hint := " (a tree laid out otherwise than kernel/ says where its parts are in l45tree.json or the L45_TREE_* variables; see README, L45_TREE)"
	established := map[string]string{ // a flat tree: core and header at its root
		"Makefile":         "obj-m += layer4_5.o\n",
		"init.c":           "",
		"common_structs.h": "",
		"test_modules/x.c": "",
		"l45tree.json":     `{"core_dir": ".", "core_make": [], "header": "common_structs.h", "netlink": "31"}`,
	}
	with := func(files map[string]string, more map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range []map[string]string{files, more} {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name  string
		files map[string]string
		env   map[string]string
		// check the tree; or wantErr, with {dir} for the tree's folder.
		check   func(t *testing.T, tr *Tree)
		wantErr string
	}{
		{name: "kernel/'s layout takes the defaults", files: kernelLayout, check: func(t *testing.T, tr *Tree) {
			want := DefaultSettings()
			if tr.CoreDir != want.CoreDir || tr.CoreModule != guest.CoreModule || strings.Join(tr.CoreMake, " ") != "CONFIG_LAYER4_5=m" ||
				tr.Header != want.Header || tr.Netlink != guest.DefaultNetlink || tr.CustomizationsDir != filepath.Join(tr.Dir, "customizations") || len(tr.Sources) != 0 {
				t.Errorf("settings %+v", tr)
			}
		}},
		{name: "a flat tree with its settings gets the project's customizations", files: established, check: func(t *testing.T, tr *Tree) {
			if tr.CoreDir != "." || len(tr.CoreMake) != 0 || tr.Header != "common_structs.h" || tr.Netlink != (guest.Netlink{Protocol: 31}) ||
				tr.CoreModule != "layer4_5" || tr.CustomizationsDir != projectCust || tr.Sources[0] != filepath.Join(tr.Dir, SettingsFile) {
				t.Errorf("settings %+v", tr)
			}
		}},
		{name: "variables win over the file", files: with(established, map[string]string{"cust/Makefile": ""}),
			env: map[string]string{"L45_TREE_NETLINK": "genl:L45", "L45_TREE_CORE_MODULE": "l45-core", "L45_TREE_CUSTOMIZATIONS": "cust", "L45_TREE_CORE_MAKE": "A=1  B=2"},
			check: func(t *testing.T, tr *Tree) {
				if tr.Netlink != (guest.Netlink{Family: "L45"}) || tr.Settings.Netlink != "genl:L45" || tr.CoreModule != "l45_core" ||
					tr.CustomizationsDir != filepath.Join(tr.Dir, "cust") || strings.Join(tr.CoreMake, ",") != "A=1,B=2" || len(tr.Sources) != 5 {
					t.Errorf("settings %+v", tr)
				}
			}},
		{name: "an empty customizations variable is the project's", files: kernelLayout, env: map[string]string{"L45_TREE_CUSTOMIZATIONS": ""},
			check: func(t *testing.T, tr *Tree) {
				if tr.CustomizationsDir != projectCust {
					t.Errorf("customizations %s", tr.CustomizationsDir)
				}
			}},
		{name: "nothing there", files: map[string]string{"README": ""},
			wantErr: "{dir} is not a Layer 4.5 tree as its settings describe it: it lacks the core's layer4_5/Kbuild or layer4_5/Makefile (setting core_dir, L45_TREE_CORE_DIR); the module interface header include/layer4_5/customization.h (setting header, L45_TREE_HEADER)" + hint},
		{name: "a named customizations folder that is not there", files: with(kernelLayout, map[string]string{"l45tree.json": `{"customizations": "mine"}`}),
			wantErr: "{dir} is not a Layer 4.5 tree as its settings describe it: it lacks the customization modules' mine/Kbuild or mine/Makefile (setting customizations, L45_TREE_CUSTOMIZATIONS; empty for the project's)" + hint},
		{name: "a misspelt field", files: with(kernelLayout, map[string]string{"l45tree.json": `{"hedaer": "x.h"}`}),
			wantErr: `{dir}/l45tree.json: json: unknown field "hedaer" (fields: core_dir, core_module, core_make, header, customizations, netlink)`},
		{name: "not JSON", files: with(kernelLayout, map[string]string{"l45tree.json": `core_dir: x`}),
			wantErr: `{dir}/l45tree.json: invalid character 'c' looking for beginning of value (fields: core_dir, core_module, core_make, header, customizations, netlink)`},
		{name: "values that cannot be used", files: with(kernelLayout, map[string]string{"l45tree.json": `{"core_dir": "../elsewhere", "header": "/abs/h.txt", "core_module": "bad name", "core_make": ["all"], "customizations": "../c"}`}),
			env: map[string]string{"L45_TREE_NETLINK": "99"},
			wantErr: `{dir}/l45tree.json: core_dir "../elsewhere": want a path relative to the tree, inside it
{dir}/l45tree.json: header "/abs/h.txt": want a path relative to the tree, inside it
{dir}/l45tree.json: header "/abs/h.txt": want the C header customization modules include
{dir}/l45tree.json: customizations "../c": want a path relative to the tree, inside it
{dir}/l45tree.json: core_module "bad name": want a kernel module name (letters, digits, _ and -, at most 55)
{dir}/l45tree.json: core_make "all": want make variables NAME=VALUE
L45_TREE_NETLINK: netlink "99": ` + guest.ErrNetlinkSpec.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range settingsEnv {
				t.Setenv(f.env, "") // restored after the test
				os.Unsetenv(f.env)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			dir := writeTree(t, tt.files)
			tr, err := LoadTree(dir)
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "{dir}", dir)
				if err == nil || err.Error() != want {
					t.Fatalf("LoadTree error:\n%v\nwant:\n%s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, tr)
		})
	}
}

func TestSettingErrorsAreTyped(t *testing.T) {
	t.Setenv("L45_TREE_NETLINK", "tcp")
	_, err := LoadTree(writeTree(t, kernelLayout))
	var se *SettingError
	if !errors.As(err, &se) || se.Source != "L45_TREE_NETLINK" || se.Field != "netlink" || !errors.Is(err, guest.ErrNetlinkSpec) {
		t.Fatalf("%#v", err)
	}
}

func TestUserModules(t *testing.T) {
	t.Setenv("L45_MODULES", "")
	if dir, err := UserModules(); dir != "" || err != nil {
		t.Fatalf("unset: %q, %v", dir, err)
	}
	dir := t.TempDir()
	t.Setenv("L45_MODULES", dir)
	if got, err := UserModules(); got != dir || err != nil {
		t.Fatalf("a folder: %q, %v", got, err)
	}
	file := filepath.Join(dir, "x.ko")
	os.WriteFile(file, nil, 0o644)
	for _, bad := range []string{file, filepath.Join(dir, "nosuch")} {
		t.Setenv("L45_MODULES", bad)
		want := "L45_MODULES=" + bad + ": want a folder of customization module sources (with a Kbuild or Makefile) or of prebuilt .ko files"
		if _, err := UserModules(); err == nil || err.Error() != want {
			t.Fatalf("%s: %v", bad, err)
		}
	}
}

// Run from outside any checkout (git bisect run in a Layer 4.5
// repository), the repository is the one this code was built from.
func TestRootFromElsewhereIsTheCheckoutBuiltFrom(t *testing.T) {
	here, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	if got, err := Root(); err != nil || got != here {
		t.Fatalf("Root from a temporary folder = %q, %v; want %q", got, err, here)
	}
}
