package main

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestE2EFlags(t *testing.T) {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		args    []string
		env     map[string]string
		rest    []string
		wantErr string
	}{
		{args: nil, env: map[string]string{}},
		{args: []string{"-run", "TestR3", "-v"}, env: map[string]string{}, rest: []string{"-run", "TestR3", "-v"}},
		{args: []string{"--tree", "/tmp/copy", "-run", "TestR3"}, env: map[string]string{"L45_TREE": "/tmp/copy"}, rest: []string{"-run", "TestR3"}},
		{args: []string{"-v", "--modules=mods", "--tree=../t"}, env: map[string]string{"L45_MODULES": abs("mods"), "L45_TREE": abs("../t")}, rest: []string{"-v"}},
		{args: []string{"-v", "--tree"}, wantErr: "--tree needs a folder"},
		{args: []string{"--modules="}, wantErr: "--modules needs a folder"},
	}
	for _, tt := range tests {
		env, rest, err := e2eFlags(tt.args)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%q: error %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(env, tt.env) || !reflect.DeepEqual(rest, tt.rest) {
			t.Errorf("%q: %v %q %v; want %v %q", tt.args, env, rest, err, tt.env, tt.rest)
		}
	}
}
