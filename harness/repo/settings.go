package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"layer45/vmimages/guest"
)

// SettingsFile is the optional file at a tree's root saying where its parts
// are when its layout is not kernel/'s (another implementation of the
// interface, such as the established one). Every field is optional; an
// absent field keeps the default, which is kernel/'s layout:
//
//	{
//	  "core_dir":       "layer4_5",        // folder built with make -C KDIR M=<core_dir> modules
//	  "core_module":    "layer4_5",        // the core's module name (rmmod, /sys/module)
//	  "core_make":      ["CONFIG_LAYER4_5=m"], // make variables for the core's build
//	  "header":         "include/layer4_5/customization.h", // the module interface header
//	  "customizations": "customizations",  // the tree's customization modules; "" = the project's
//	  "netlink":        "25"               // control interface: protocol number, or genl:FAMILY
//	}
//
// Paths are relative to the tree. Without a customizations folder of its
// own (and none named), a tree gets the project's kernel/customizations,
// built against its header. Each field can be overridden by an environment
// variable, which wins over the file: see settingsEnv.
const SettingsFile = "l45tree.json"

// Settings are a tree's layout and interface, as l45tree.json spells them.
type Settings struct {
	CoreDir    string   `json:"core_dir"`
	CoreModule string   `json:"core_module"`
	CoreMake   []string `json:"core_make"`
	Header     string   `json:"header"`
	// Customizations is nil when not set: the tree's customizations/ if
	// it has one, else the project's.
	Customizations *string `json:"customizations"`
	Netlink        string  `json:"netlink"`
}

// DefaultSettings are kernel/'s layout.
func DefaultSettings() Settings {
	return Settings{
		CoreDir:    "layer4_5",
		CoreModule: guest.CoreModule,
		CoreMake:   []string{"CONFIG_LAYER4_5=m"},
		Header:     "include/layer4_5/customization.h",
		Netlink:    guest.DefaultNetlink.String(),
	}
}

// defaultCustomizations is the folder a tree's own customization modules
// are in when the settings do not name one.
const defaultCustomizations = "customizations"

// settingsEnv are the variables that override each field (core_make: words
// separated by spaces; customizations: empty for the project's).
var settingsEnv = []struct{ env, field string }{
	{"L45_TREE_CORE_DIR", "core_dir"},
	{"L45_TREE_CORE_MODULE", "core_module"},
	{"L45_TREE_CORE_MAKE", "core_make"},
	{"L45_TREE_HEADER", "header"},
	{"L45_TREE_CUSTOMIZATIONS", "customizations"},
	{"L45_TREE_NETLINK", "netlink"},
}

// Tree is a Layer 4.5 tree with its settings checked and resolved.
type Tree struct {
	// Dir is the tree's absolute path.
	Dir string
	Settings
	// CustomizationsDir is the absolute folder of the customization
	// modules the suites load: the tree's, or the project's.
	CustomizationsDir string
	// Netlink is Settings.Netlink parsed.
	Netlink guest.Netlink
	// Sources name where the settings came from besides the defaults
	// (the file, variables), for build logs.
	Sources []string
}

// SettingError is one setting that cannot be used.
type SettingError struct {
	Source string // the settings file or the variable
	Field  string
	Value  string
	Err    error
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("%s: %s %q: %v", e.Source, e.Field, e.Value, e.Err)
}

func (e *SettingError) Unwrap() error { return e.Err }

// TreeError is a tree lacking what its settings say it holds.
type TreeError struct {
	Dir     string
	Missing []string // each: what, where, and the setting that names it
}

func (e *TreeError) Error() string {
	return fmt.Sprintf("%s is not a Layer 4.5 tree as its settings describe it: it lacks %s (a tree laid out otherwise than kernel/ says where its parts are in %s or the L45_TREE_* variables; see README, L45_TREE)",
		e.Dir, strings.Join(e.Missing, "; "), SettingsFile)
}

var (
	moduleName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,55}$`)
	makeVar    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
)

// LoadTree reads dir's settings (defaults, then its l45tree.json, then the
// L45_TREE_* variables) and checks them and the files they name.
func LoadTree(dir string) (*Tree, error) {
	t := &Tree{Dir: dir, Settings: DefaultSettings()}
	file := filepath.Join(dir, SettingsFile)
	b, err := os.ReadFile(file)
	switch {
	case err == nil:
		if err := decodeSettings(b, &t.Settings); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		t.Sources = append(t.Sources, file)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	source := map[string]string{} // field -> where its value came from
	for _, f := range settingsEnv {
		source[f.field] = file
		v, ok := os.LookupEnv(f.env)
		if !ok {
			continue
		}
		source[f.field] = f.env
		t.Sources = append(t.Sources, f.env+"="+v)
		t.Settings.set(f.field, v)
	}
	if bad := t.check(source); len(bad) > 0 {
		return nil, errors.Join(bad...)
	}
	if err := t.resolve(); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeSettings overlays the file's fields on s; an unknown field is an
// error (a misspelt setting must not silently keep its default).
func decodeSettings(b []byte, s *Settings) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(s); err != nil {
		return fmt.Errorf("%w (fields: core_dir, core_module, core_make, header, customizations, netlink)", err)
	}
	return nil
}

// set applies a variable's value to a field.
func (s *Settings) set(field, v string) {
	switch field {
	case "core_dir":
		s.CoreDir = v
	case "core_module":
		s.CoreModule = v
	case "core_make":
		s.CoreMake = strings.Fields(v)
	case "header":
		s.Header = v
	case "customizations":
		s.Customizations = &v
	case "netlink":
		s.Netlink = v
	}
}

// check validates each field's form; source names where each came from.
func (t *Tree) check(source map[string]string) []error {
	var bad []error
	fail := func(field, value, why string) {
		bad = append(bad, &SettingError{Source: source[field], Field: field, Value: value, Err: errors.New(why)})
	}
	local := func(field, p string) {
		if !filepath.IsLocal(p) {
			fail(field, p, "want a path relative to the tree, inside it")
		}
	}
	local("core_dir", t.CoreDir)
	local("header", t.Header)
	if !strings.HasSuffix(t.Header, ".h") {
		fail("header", t.Header, "want the C header customization modules include")
	}
	if c := t.Customizations; c != nil && *c != "" {
		local("customizations", *c)
	}
	if !moduleName.MatchString(t.CoreModule) {
		fail("core_module", t.CoreModule, "want a kernel module name (letters, digits, _ and -, at most 55)")
	}
	for _, v := range t.CoreMake {
		if !makeVar.MatchString(v) {
			fail("core_make", v, "want make variables NAME=VALUE")
		}
	}
	nl, err := guest.ParseNetlink(t.Settings.Netlink)
	if err != nil {
		bad = append(bad, &SettingError{Source: source["netlink"], Field: "netlink", Value: t.Settings.Netlink, Err: guest.ErrNetlinkSpec})
	}
	t.Netlink = nl
	// The kernel names a module file with dashes as underscores.
	t.CoreModule = strings.ReplaceAll(t.CoreModule, "-", "_")
	return bad
}

// resolve finds the files the settings name, saying which are missing.
func (t *Tree) resolve() error {
	var missing []string
	if !HasKbuild(filepath.Join(t.Dir, t.CoreDir)) {
		missing = append(missing, fmt.Sprintf("the core's %s (setting core_dir, L45_TREE_CORE_DIR)", buildFiles(t.CoreDir)))
	}
	if fi, err := os.Stat(filepath.Join(t.Dir, t.Header)); err != nil || !fi.Mode().IsRegular() {
		missing = append(missing, fmt.Sprintf("the module interface header %s (setting header, L45_TREE_HEADER)", t.Header))
	}
	switch c := t.Customizations; {
	case c == nil && HasKbuild(filepath.Join(t.Dir, defaultCustomizations)):
		t.CustomizationsDir = filepath.Join(t.Dir, defaultCustomizations)
	case c == nil || *c == "":
		root, err := Root()
		if err != nil {
			return err
		}
		t.CustomizationsDir = filepath.Join(root, "kernel", defaultCustomizations)
	case HasKbuild(filepath.Join(t.Dir, *c)):
		t.CustomizationsDir = filepath.Join(t.Dir, *c)
	default:
		missing = append(missing, fmt.Sprintf("the customization modules' %s (setting customizations, L45_TREE_CUSTOMIZATIONS; empty for the project's)", buildFiles(*c)))
	}
	if len(missing) > 0 {
		return &TreeError{Dir: t.Dir, Missing: missing}
	}
	return nil
}

// HasKbuild says whether dir is a folder of kernel module sources that
// make -C KDIR M=dir builds (it has a Kbuild or a Makefile).
func HasKbuild(dir string) bool {
	for _, f := range []string{"Kbuild", "Makefile"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

func buildFiles(dir string) string {
	return filepath.Join(dir, "Kbuild") + " or " + filepath.Join(dir, "Makefile")
}
