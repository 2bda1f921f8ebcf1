package kernels

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DebianKeyring is what the private apt configuration trusts: the Debian
// archive's signing keys (package debian-archive-keyring).
const DebianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// listsMaxAge is how old a private configuration's package lists may be
// before the next use refreshes them (a kernel spec names a suite, and a
// suite's kernel moves with its security updates).
const listsMaxAge = 24 * time.Hour

// aptConfig is the apt configuration a Debian kernel is fetched with. For
// the machine's own suite it is the system's configuration, untouched. For
// any other suite it is a private one under the harness cache
// (.apt/SUITE/): its own source list, package lists, cache and an empty
// dpkg status, so the system's sources and state are never changed. The
// private source list reuses the archive URLs the system's sources use and
// apt reads the system's apt.conf.d as usual, so proxies and Acquire
// options of the machine apply alike.
type aptConfig struct {
	suite string
	// dir is the private configuration; "" means the system's.
	dir string
	// state holds the harness's lock and binary package cache for this
	// configuration (dir itself for a private one).
	state string
	run   Runner
	// known and missing remember apt-cache's answers for one resolution.
	known   map[string]stanza
	missing map[string]bool
}

func (a *aptConfig) private() bool { return a.dir != "" }

func (a *aptConfig) sourcesFile() string { return filepath.Join(a.dir, "sources.sources") }

// options go before apt-get's or apt-cache's command.
func (a *aptConfig) options() []string {
	// Downloading as root, apt would otherwise try to drop to the _apt
	// user, who cannot write into the cache.
	o := []string{"-o", "APT::Sandbox::User=root"}
	if a.state != "" {
		// The binary cache of the lists (this machine's apt.conf.d turns
		// the system's off): without it every apt-cache call parses all
		// the lists again, a second or more each. apt rebuilds it when
		// the lists change.
		o = append(o, "-o", "Dir::Cache::pkgcache="+filepath.Join(a.state, "pkgcache.bin"))
	}
	if !a.private() {
		return o
	}
	return append(o,
		"-c", filepath.Join(a.dir, "apt.conf"),
		"-o", "Dir::Etc::sourcelist="+a.sourcesFile(),
		"-o", "Dir::Etc::sourceparts="+filepath.Join(a.dir, "empty.d"),
		"-o", "Dir::Etc::preferences="+filepath.Join(a.dir, "preferences"),
		"-o", "Dir::Etc::preferencesparts="+filepath.Join(a.dir, "empty.d"),
		"-o", "Dir::State::Lists="+filepath.Join(a.dir, "lists"),
		"-o", "Dir::State::status="+filepath.Join(a.dir, "status"),
		"-o", "Dir::State::extended_states="+filepath.Join(a.dir, "extended_states"),
		"-o", "Dir::Cache="+filepath.Join(a.dir, "cache"),
	)
}

func (a *aptConfig) aptGet(ctx context.Context, dir string, progress io.Writer, args ...string) ([]byte, error) {
	return a.run(ctx, dir, progress, "apt-get", append(a.options(), args...)...)
}

// privateAptConf clears the system's update hooks (they refresh the
// system's own metadata, not ours); everything else of the system's
// apt.conf.d (proxies, Acquire options) stays in force.
const privateAptConf = `// Written by the Layer 4.5 harness: apt configuration for one Debian suite.
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
`

// systemArchives are the URLs through which this machine's apt reaches
// Debian: its main archive and its security archive, as its own sources
// name them.
type systemArchives struct {
	main, security string
}

// archivesOfSystem asks apt which repositories the system's sources use.
// A repository whose suite is a plain name (bookworm, sid) is the main
// archive, one whose suite ends in -security the security archive.
func archivesOfSystem(ctx context.Context, run Runner) (systemArchives, error) {
	out, err := run(ctx, "", nil, "apt-get", "indextargets", "--no-release-info",
		"--format", "$(REPO_URI) $(RELEASE)", "Identifier: Packages")
	if err != nil {
		return systemArchives{}, fmt.Errorf("read this machine's apt sources: %w", err)
	}
	var a systemArchives
	for _, l := range strings.Split(string(out), "\n") {
		uri, suite, ok := strings.Cut(strings.TrimSpace(l), " ")
		if !ok {
			continue
		}
		switch {
		case strings.HasSuffix(suite, "-security"):
			if a.security == "" {
				a.security = uri
			}
		case !strings.Contains(suite, "-") && !strings.Contains(suite, "/"):
			if a.main == "" {
				a.main = uri
			}
		}
	}
	if a.main == "" {
		return a, fmt.Errorf("this machine's apt sources name no Debian archive (apt-get indextargets lists no plain suite):\n%s", out)
	}
	return a, nil
}

// rolling suites have neither -updates nor -security companions.
func rolling(suite string) bool {
	switch suite {
	case "sid", "unstable", "experimental", "rc-buggy":
		return true
	}
	return false
}

// sources is the private deb822 source list of suite: the suite and its
// -updates from the system's main archive, -security from its security
// archive, each signed by the Debian archive keyring. Only the Packages
// indexes are fetched.
func (s systemArchives) sources(suite string) string {
	entry := func(uri string, suites ...string) string {
		return "Types: deb\nURIs: " + uri + "\nSuites: " + strings.Join(suites, " ") +
			"\nComponents: main\nSigned-By: " + DebianKeyring + "\nTargets: Packages\n"
	}
	if rolling(suite) {
		return entry(s.main, suite)
	}
	out := entry(s.main, suite, suite+"-updates")
	if s.security != "" {
		out += "\n" + entry(s.security, suite+"-security")
	}
	return out
}

var suiteName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// openApt returns the apt configuration for suite: the system's when suite
// is this machine's, else the private one under cacheRoot, refreshed when
// its lists are missing or older than listsMaxAge.
func openApt(ctx context.Context, suite, host, keyring, cacheRoot string, run Runner, progress io.Writer) (*aptConfig, error) {
	if host != "" && host == suite {
		a := &aptConfig{suite: suite, state: filepath.Join(cacheRoot, ".apt", "system"), run: run}
		if err := os.MkdirAll(a.state, 0o755); err != nil {
			return nil, fmt.Errorf("apt state for the system's configuration: %w", err)
		}
		return a, nil
	}
	if !suiteName.MatchString(suite) {
		return nil, fmt.Errorf("%q is not a Debian suite name", suite)
	}
	if _, err := os.Stat(keyring); err != nil {
		return nil, fmt.Errorf("the Debian archive keyring is missing (%v): install debian-archive-keyring", err)
	}
	// A dot directory: the cache's eviction and debris cleaning leave
	// those alone (this is mutable state, not a content-addressed entry).
	dir := filepath.Join(cacheRoot, ".apt", suite)
	a := &aptConfig{suite: suite, dir: dir, state: dir, run: run}
	for _, d := range []string{"lists/partial", "cache/archives/partial", "empty.d"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("private apt configuration: %w", err)
		}
	}
	unlock, err := lockFile(ctx, filepath.Join(a.dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	arch, err := archivesOfSystem(ctx, run)
	if err != nil {
		return nil, err
	}
	files := map[string]string{
		a.sourcesFile():                  arch.sources(suite),
		filepath.Join(a.dir, "apt.conf"): privateAptConf,
		filepath.Join(a.dir, "status"):   "",
	}
	changed := false
	for p, content := range files {
		old, err := os.ReadFile(p)
		if err == nil && string(old) == content {
			continue
		}
		changed = changed || p == a.sourcesFile()
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("private apt configuration: %w", err)
		}
	}
	stamp := filepath.Join(a.dir, "updated")
	fi, err := os.Stat(stamp)
	if err == nil && !changed && time.Since(fi.ModTime()) < listsMaxAge {
		return a, nil
	}
	if progress != nil {
		fmt.Fprintf(progress, "Updating the package lists of Debian %s (private apt configuration in %s)\n", suite, a.dir)
	}
	if _, uerr := a.aptGet(ctx, "", nil, "update"); uerr != nil {
		if err == nil && !changed {
			// The lists of an earlier update are there: say loudly that
			// they are used as they are; the kernel's exact versions are
			// recorded either way.
			if progress != nil {
				fmt.Fprintf(progress, "WARNING: could not refresh Debian %s's package lists (%v); using the lists of %s\n",
					suite, firstLine(uerr.Error()), fi.ModTime().UTC().Format(time.RFC3339))
			}
			return a, nil
		}
		return nil, fmt.Errorf("Debian %s: apt-get update with the private configuration in %s failed: %w\n(is %q a Debian suite, and is the archive reachable?)", suite, a.dir, uerr, suite)
	}
	if err := os.WriteFile(stamp, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return nil, err
	}
	return a, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// lockFile holds an exclusive flock on path until the returned function
// runs, waiting (as long as ctx allows) for another process holding it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another process holding %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stanza is one package's control fields as apt-cache show prints them.
type stanza map[string]string

var errNoPackage = errors.New("no such package")

// show returns the candidate stanza of pkg, or an error wrapping
// errNoPackage.
func (a *aptConfig) show(ctx context.Context, pkg string) (stanza, error) {
	if err := a.prefetch(ctx, pkg); err != nil {
		return nil, err
	}
	if st, ok := a.known[pkg]; ok {
		return st, nil
	}
	return nil, fmt.Errorf("%s: %w in Debian %s", pkg, errNoPackage, a.suite)
}

// prefetch asks apt-cache about the packages not asked about yet, in one
// call: it prints the stanzas of those it knows (each package's candidate
// first) and skips the others.
func (a *aptConfig) prefetch(ctx context.Context, pkgs ...string) error {
	if a.known == nil {
		a.known, a.missing = map[string]stanza{}, map[string]bool{}
	}
	var ask []string
	for _, p := range pkgs {
		if _, ok := a.known[p]; !ok && !a.missing[p] {
			ask = append(ask, p)
		}
	}
	if len(ask) == 0 {
		return nil
	}
	if a.state != "" {
		// apt-cache may rebuild the binary cache: one process at a time.
		unlock, err := lockFile(ctx, filepath.Join(a.state, ".lock"))
		if err != nil {
			return err
		}
		defer unlock()
	}
	out, err := a.run(ctx, "", nil, "apt-cache", append(a.options(), append([]string{"show"}, ask...)...)...)
	if err != nil && !strings.Contains(err.Error(), "No packages found") {
		return err
	}
	for _, chunk := range strings.Split(string(out), "\n\n") {
		st := parseStanza(chunk)
		if name := st["Package"]; name != "" {
			if _, seen := a.known[name]; !seen {
				a.known[name] = st
			}
		}
	}
	for _, p := range ask {
		if _, ok := a.known[p]; !ok {
			a.missing[p] = true
		}
	}
	return nil
}

func parseStanza(s string) stanza {
	st := stanza{}
	last := ""
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, " ") && last != "" {
			st[last] += "\n" + l
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		last = k
		st[k] = strings.TrimSpace(v)
	}
	return st
}

// dependency is one alternative of a Depends entry.
type dependency struct {
	name, op, version string
}

// depends parses a Depends field: each entry is a list of alternatives.
func depends(field string) [][]dependency {
	var out [][]dependency
	for _, entry := range strings.Split(field, ",") {
		var alts []dependency
		for _, alt := range strings.Split(entry, "|") {
			alt = strings.TrimSpace(alt)
			if alt == "" {
				continue
			}
			d := dependency{name: alt}
			if i := strings.IndexByte(alt, '('); i >= 0 {
				d.name = strings.TrimSpace(alt[:i])
				c := strings.Fields(strings.Trim(alt[i:], "()"))
				if len(c) == 2 {
					d.op, d.version = c[0], c[1]
				}
			}
			d.name, _, _ = strings.Cut(d.name, ":") // :any
			alts = append(alts, d)
		}
		if len(alts) > 0 {
			out = append(out, alts)
		}
	}
	return out
}
