package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"layer45/harness/faults"
	"layer45/harness/repo"
	"layer45/harness/repro"
)

// writeRepro writes a repro file into dir.
func writeRepro(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

// bundleFiles unpacks a bundle and returns its files by path inside it.
func bundleFiles(t *testing.T, bundle string) map[string]string {
	t.Helper()
	u, err := repro.OpenBundle(bundle)
	require.NoError(t, err)
	defer u.Close()
	out := map[string]string{}
	require.NoError(t, filepath.Walk(u.Dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(u.Dir, p)
			b, err := os.ReadFile(p)
			out[filepath.ToSlash(rel)] = string(b)
			return err
		}
		return err
	}))
	return out
}

// l45 repro without guests: every way it cannot run exits 125 and says
// why, so git bisect run skips instead of blaming a commit.
func TestReproCommandWithoutGuests(t *testing.T) {
	code, out := runL45(t, nil, "repro", "--example")
	require.Equal(t, 0, code, out)
	dir := t.TempDir()
	example := writeRepro(t, dir, "example.yaml", out)

	code, out = runL45(t, nil, "repro", "-h")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "git bisect run")

	for _, args := range [][]string{{"repro"}, {"repro", "a.yaml", "b.yaml"}, {"repro", "--repeat", "0", example}, {"repro", "--replay", "x.tar.gz", example}, {"repro", "--bogus"}} {
		code, out = runL45(t, nil, args...)
		require.Equal(t, repro.ExitCannotRun, code, "%v: %s", args, out)
		require.Contains(t, out, "usage: l45 repro")
	}

	bad := writeRepro(t, dir, "bad.yaml", "client:\n  modules:\n    - name: tag\n      parms: {x: 1}\nreproduced:\n  of: [crash: {}]\n")
	code, out = runL45(t, nil, "repro", bad)
	require.Equal(t, repro.ExitCannotRun, code, out)
	require.Contains(t, out, "bad.yaml:4: parms: unknown field in a module; it takes: name, params")

	code, out = runL45(t, nil, "repro", "--replay", filepath.Join(dir, "none.tar.gz"))
	require.Equal(t, repro.ExitCannotRun, code, out)
	require.Contains(t, out, "no verdict")

	// The example is a valid file: without QEMU it gets as far as the
	// guests' environment and stops there, with no verdict.
	code, out = runL45(t, []string{"PATH=" + t.TempDir(), "L45_CACHE=" + t.TempDir(), "L45_ARTIFACTS=" + t.TempDir()}, "repro", example)
	require.Equal(t, repro.ExitCannotRun, code, out)
	require.Contains(t, out, "qemu-system-x86_64 is not installed")
	require.NotContains(t, out, "reproduced 0")
}

// (a) A repro that loads crash_test with mode=null reproduces the oops;
// the bundle holds the console with it, and replays from itself alone.
func TestReproCrashIsReproducedAndReplays(t *testing.T) {
	if testing.Short() {
		t.Skip("boots guests; skipped with -short")
	}
	dir := t.TempDir()
	env := []string{"L45_ARTIFACTS=" + t.TempDir()}
	file := writeRepro(t, dir, "crash.yaml", `title: crash_test oopses when loaded with mode=null
client:
  modules:
    - name: crash_test
      params: {mode: "null"}
reproduced:
  of:
    - crash: {guest: client, title: NULL pointer dereference}
`)
	bundle := filepath.Join(dir, "crash.tar.gz")
	code, out := runL45(t, env, "repro", "-o", bundle, file)
	require.Equal(t, repro.ExitReproduced, code, out)
	require.Contains(t, out, "reproduced 1 of 1")
	fi, err := os.Stat(bundle)
	require.NoError(t, err)
	t.Logf("bundle %s: %.1f MiB", bundle, float64(fi.Size())/(1<<20))

	files := bundleFiles(t, bundle)
	require.Contains(t, files["runs/1/client.console.txt"], "BUG: kernel NULL pointer dereference")
	require.Contains(t, files["verdict.txt"], "client: BUG: kernel NULL pointer dereference")
	require.Contains(t, files["modules/crash_test.ko"], "crash_test")
	require.Contains(t, files["kernel/kernel.json"], `"packages"`)
	require.Contains(t, files["README.txt"], "l45 repro --replay "+bundle)

	replayed := filepath.Join(dir, "replayed.tar.gz")
	code, out = runL45(t, env, "repro", "--replay", bundle, "-o", replayed)
	require.Equal(t, repro.ExitReproduced, code, out)
	require.Contains(t, out, "from the bundle (nothing is fetched)")
	require.Contains(t, bundleFiles(t, replayed)["manifest.json"], `"replay_of": "`+bundle+`"`)
}

// (b) The wire holds the answer, so a repro phrased as the bug ("the
// answer is NOT on the wire") is not reproduced.
func TestReproWireAssertionThatHoldsIsNotReproduced(t *testing.T) {
	if testing.Short() {
		t.Skip("boots guests; skipped with -short")
	}
	dir := t.TempDir()
	file := writeRepro(t, dir, "dns.yaml", `title: dnsmasq's answer never reaches the client
steps:
  - {name: dnsmasq, guest: server, background: true, listening: udp/53,
     run: [dnsmasq, --keep-in-foreground, --no-resolv, --no-hosts, --user=root, --group=root,
           --bind-interfaces, --listen-address=10.0.0.20, --address=/probe.layer45.test/10.9.8.7]}
  - {name: dig, guest: client, run: [dig, +time=3, +tries=2, "@10.0.0.20", probe.layer45.test, A]}
reproduced:
  of:
    - dns: {name: probe.layer45.test, answer: 10.9.8.7}
      not: true
`)
	bundle := filepath.Join(dir, "dns.tar.gz")
	code, out := runL45(t, []string{"L45_ARTIFACTS=" + t.TempDir()}, "repro", "-o", bundle, file)
	require.Equal(t, repro.ExitNotReproduced, code, out)
	require.Contains(t, out, "reproduced 0 of 1")
	files := bundleFiles(t, bundle)
	require.Contains(t, files["runs/1/verdict.txt"], "[no] NOT a DNS response on the wire answers probe.layer45.test with 10.9.8.7")
	require.Contains(t, files["runs/1/wire.txt"], "probe.layer45.test. A rcode=NOERROR")
	require.Contains(t, files["runs/1/steps/dig.txt"], "10.9.8.7")
	require.Contains(t, files, "runs/1/lan.pcap")
}

// (c) git bisect run l45 repro finds the commit of a Layer 4.5 tree that
// brought the error-sign fault (R4: a send the error module fails comes
// back EMSGSIZE, not the module's EPERM).
func TestReproBisectsATree(t *testing.T) {
	if testing.Short() {
		t.Skip("boots guests; skipped with -short")
	}
	root, err := repo.Root()
	require.NoError(t, err)
	scratch := t.TempDir()
	require.NoError(t, faults.CopyTree(filepath.Join(root, "kernel"), scratch))
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=l45", "-c", "user.email=l45@example.invalid"}, args...)...)
		cmd.Dir = scratch
		cmd.Env = append(os.Environ(), "L45_ARTIFACTS="+t.TempDir())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v\n%s", args, out)
		return string(out)
	}
	note := func(text string) {
		f, err := os.OpenFile(filepath.Join(scratch, "NOTES"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		require.NoError(t, err)
		f.WriteString(text + "\n")
		require.NoError(t, f.Close())
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-qm", "good: the project's Layer 4.5")
	note("a change that builds the same")
	git("add", "NOTES")
	git("commit", "-qm", "good: notes")
	all, err := faults.Load(filepath.Join(root, "kernel", "faults"))
	require.NoError(t, err)
	sel, err := faults.Select(all, []string{"error-sign"})
	require.NoError(t, err)
	_, err = faults.Apply(context.Background(), sel[0], scratch, false)
	require.NoError(t, err)
	git("commit", "-qam", "bad: copy_length read unsigned")
	bad := strings.TrimSpace(git("rev-parse", "HEAD"))
	note("later")
	git("add", "NOTES")
	git("commit", "-qm", "bad: more notes")

	file := writeRepro(t, t.TempDir(), "eperm.yaml", `title: "R4: the error module's EPERM comes back as another errno"
tree: `+scratch+`
client:
  modules:
    - name: error
      params: {errno: "-1", on_recv: "0", task_tgid: l45net, protocol: "6", dest_port: "7112"}
steps:
  - name: echo
    guest: server
    run: [l45net, tcp-serve, -listen, "10.0.0.20:7112", -prefix, "echo:"]
    background: true
    listening: tcp/7112
  - name: send
    guest: client
    run: [l45net, tcp, -to, "10.0.0.20:7112", -msg, fails-1, -msg, fails-2, -segments, "2"]
reproduced:
  when: all
  of:
    - exit: {step: send, status: 0}
    - output: {step: send, stream: stdout, regexp: '"errno":"EPERM"'}
      not: true
`)
	git("bisect", "start", "HEAD", "HEAD~3")
	out := git("bisect", "run", l45Bin, "repro", file)
	t.Log(out)
	git("bisect", "reset")
	require.Regexp(t, regexp.MustCompile(bad+" is the first bad commit"), out)
}
