package repro

import (
	"archive/tar"
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"layer45/harness/infra"
	"layer45/harness/kernels"
	"layer45/harness/pcapdns"
	"layer45/vmimages/guest"
)

// A bundle is one .tar.gz holding one folder (named like the bundle):
//
//	README.txt        what happened and the command that replays it
//	repro.yaml        the repro file as given
//	verdict.txt       reproduced or not, and why, run by run
//	manifest.json     the same, with the kernel's packages and the modules' sha256
//	SHA256SUMS        sha256 of every other file (sha256sum -c)
//	host.txt          QEMU, the guests' programs, the accelerator, the checkout
//	kernel/           the booted kernel as the dir: kernel provider reads it:
//	                  kernel.json (exact package versions), vmlinuz, modules/REL/
//	                  (the kernel modules the guests load, with modules.dep),
//	                  build/.config
//	modules/          the Layer 4.5 modules loaded (NAME.ko) and build.log
//	tree.sha256       sha256 of every source file of the Layer 4.5 tree built
//	files/GUEST/PATH  the host files copied into the guests
//	runs/N/           each run: NAME.console.txt, NAME.qemu.txt, NAME.dmesg.txt,
//	                  NAME.trace.txt, lan.pcap, wire.txt (the capture decoded),
//	                  steps/STEP.txt (command, status, output), verdict.txt

// bundleFormat is manifest.json's format number.
const bundleFormat = 1

// manifest is manifest.json.
type manifest struct {
	Format     int               `json:"format"`
	Created    time.Time         `json:"created"`
	Title      string            `json:"title,omitempty"`
	KernelSpec string            `json:"kernel_spec"`
	Kernel     bundleKernel      `json:"kernel"`
	Tree       string            `json:"tree,omitempty"`
	Modules    map[string]string `json:"modules_sha256"`
	ReplayOf   string            `json:"replay_of,omitempty"`
	Repeat     int               `json:"repeat"`
	Reproduced int               `json:"reproduced"`
	Runs       []bundleRun       `json:"runs"`
	Replay     string            `json:"replay_command"`
}

type bundleKernel struct {
	Release        string            `json:"release"`
	Provider       string            `json:"provider"`
	Packages       []kernels.Package `json:"packages,omitempty"`
	Layer45Builtin bool              `json:"layer45_builtin"`
}

type bundleRun struct {
	N       int      `json:"n"`
	Outcome string   `json:"outcome"`
	Why     []string `json:"why"`
	Seconds float64  `json:"seconds"`
}

// bundleWriter writes a bundle as its files come, to a temporary name
// renamed into place when it is complete.
type bundleWriter struct {
	out, partial, top string
	f                 *os.File
	gz                *gzip.Writer
	tw                *tar.Writer
	sums              []string
	done              bool
}

// BundleName is the bundle's folder name for a bundle file.
func BundleName(file string) string {
	return strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), ".gz"), ".tar")
}

func createBundle(out string) (*bundleWriter, error) {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, infra.Wrap("write the bundle", err)
	}
	w := &bundleWriter{out: out, partial: out + ".partial", top: BundleName(out)}
	f, err := os.Create(w.partial)
	if err != nil {
		return nil, infra.Wrap("write the bundle", err)
	}
	w.f, w.gz = f, gzip.NewWriter(f)
	w.tw = tar.NewWriter(w.gz)
	return w, nil
}

// add writes one file of the bundle from r.
func (w *bundleWriter) add(name string, size int64, mode int64, r io.Reader) error {
	hdr := &tar.Header{Name: path.Join(w.top, name), Size: size, Mode: mode, ModTime: time.Now(), Typeflag: tar.TypeReg}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return infra.Wrap("write the bundle", err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w.tw, h), r); err != nil {
		return infra.Wrap("write the bundle: "+name, err)
	}
	w.sums = append(w.sums, hex.EncodeToString(h.Sum(nil))+"  "+name)
	return nil
}

func (w *bundleWriter) addBytes(name string, data []byte) error {
	return w.add(name, int64(len(data)), 0o644, bytes.NewReader(data))
}

func (w *bundleWriter) addFile(name, from string) error {
	f, err := os.Open(from)
	if err != nil {
		return infra.Wrap("write the bundle", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return infra.Wrap("write the bundle", err)
	}
	return w.add(name, fi.Size(), int64(fi.Mode().Perm()), f)
}

// addInputs writes what every run shares: the file and what it copies in,
// the kernel, the modules, the tree's checksums and the host.
func (w *bundleWriter) addInputs(r *Runner, b *Build) error {
	if err := w.addBytes("repro.yaml", r.File.Source); err != nil {
		return err
	}
	for _, g := range []string{Server, Client} {
		for _, c := range r.File.Guest(g).Files {
			data, err := r.Input(g, c)
			if err != nil {
				return err
			}
			if err := w.addBytes(path.Join("files", g, c.To), data); err != nil {
				return err
			}
		}
	}
	files, manifest, err := kernels.Pack(b.Kernel, b.KernelFiles)
	if err != nil {
		return infra.Wrap("bundle the kernel", err)
	}
	if err := w.addBytes("kernel/kernel.json", manifest); err != nil {
		return err
	}
	for _, to := range slices.Sorted(maps.Keys(files)) {
		if err := w.addFile(path.Join("kernel", to), files[to]); err != nil {
			return err
		}
	}
	for _, m := range loadedModules(r.File, b) {
		if err := w.addFile("modules/"+m+".ko", b.Modules[m]); err != nil {
			return err
		}
	}
	for name, data := range map[string]string{"modules/build.log": b.BuildLog, "tree.sha256": b.TreeSums, "host.txt": b.Host} {
		if data == "" {
			continue
		}
		if err := w.addBytes(name, []byte(data)); err != nil {
			return err
		}
	}
	return nil
}

// loadedModules are the modules a run of f loads: the core (unless built
// in) and the file's, each once.
func loadedModules(f *File, b *Build) []string {
	var names []string
	if !b.Kernel.Layer45Builtin {
		names = append(names, guest.CoreModule)
	}
	for _, g := range []string{Server, Client} {
		for _, m := range f.Guest(g).Modules {
			if !slices.Contains(names, m.Name) {
				names = append(names, m.Name)
			}
		}
	}
	return names
}

// addRun writes one run: its evidence folder, the steps' results, the
// capture decoded and its verdict.
func (w *bundleWriter) addRun(n int, dir string, f *File, o *Observations, run RunReport) error {
	base := fmt.Sprintf("runs/%d", n)
	if dir != "" {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			return w.addFile(path.Join(base, filepath.ToSlash(rel)), p)
		})
		if err != nil {
			return infra.Wrap("bundle run "+fmt.Sprint(n), err)
		}
	}
	for _, s := range f.Steps {
		if res := o.Results[s.Name]; res != nil {
			var b bytes.Buffer
			fmt.Fprintf(&b, "# step %s on the %s (%s line %d)\nargv: %q\n%s after %s\n--- stdout\n%s\n--- stderr\n%s\n",
				s.Name, s.Guest, f.Name, s.Line, s.Run, ended(res), res.Duration.Round(time.Millisecond), res.Stdout, res.Stderr)
			if err := w.addBytes(path.Join(base, "steps", s.Name+".txt"), b.Bytes()); err != nil {
				return err
			}
		}
	}
	if err := w.addBytes(path.Join(base, "wire.txt"), []byte(wireText(o.Packets))); err != nil {
		return err
	}
	return w.addBytes(path.Join(base, "verdict.txt"), []byte(runText(run, o.Stopped)))
}

// wireText is the capture decoded: the DNS messages, then every packet.
func wireText(packets []pcapdns.Packet) string {
	var b strings.Builder
	msgs := pcapdns.Messages(packets)
	fmt.Fprintf(&b, "# DNS messages (%d)\n%s\n# packets (%d)\n", len(msgs), pcapdns.Summary(msgs), len(packets))
	for _, p := range packets {
		flags := ""
		if p.SYN {
			flags += " SYN"
		}
		if p.FIN {
			flags += " FIN"
		}
		payload := p.Payload
		if len(payload) > 96 {
			payload = payload[:96]
		}
		fmt.Fprintf(&b, "%s %s %s -> %s%s len=%d %q\n", p.Time.Format("15:04:05.000000"), p.Proto, p.Src, p.Dst, flags, len(p.Payload), payload)
	}
	return b.String()
}

func runText(run RunReport, stopped string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %d: %s (%.0fs)\n", run.N, run.Outcome, run.Took.Seconds())
	if stopped != "" {
		fmt.Fprintf(&b, "the run stopped early: %s\n", stopped)
	}
	for _, w := range run.Why {
		fmt.Fprintf(&b, "  %s\n", w)
	}
	return b.String()
}

// finish writes the verdict, manifest, README and checksums, and puts the
// bundle in place.
func (w *bundleWriter) finish(r *Runner, b *Build, rep *Report, repeat int) (int64, error) {
	k, _ := rep.Count()
	replay := "l45 repro --replay " + r.Out
	m := manifest{
		Format: bundleFormat, Created: time.Now().UTC(), Title: r.File.Title, KernelSpec: b.KernelSpec,
		Kernel: bundleKernel{b.Kernel.Release, b.Kernel.Provider, b.Kernel.Packages, b.Kernel.Layer45Builtin},
		Tree:   b.Tree, Modules: map[string]string{}, ReplayOf: r.ReplayOf, Repeat: repeat, Reproduced: k, Replay: replay,
	}
	for _, s := range w.sums {
		if sum, name, _ := strings.Cut(s, "  "); strings.HasPrefix(name, "modules/") && strings.HasSuffix(name, ".ko") {
			m.Modules[strings.TrimSuffix(path.Base(name), ".ko")] = sum
		}
	}
	var verdict strings.Builder
	fmt.Fprintf(&verdict, "%s\n\n", rep.Summary(repeat))
	for _, run := range rep.Runs {
		m.Runs = append(m.Runs, bundleRun{run.N, run.Outcome.String(), run.Why, run.Took.Seconds()})
		verdict.WriteString(runText(run, "") + "\n")
	}
	mj, _ := json.MarshalIndent(&m, "", "  ")
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"verdict.txt", []byte(verdict.String())},
		{"manifest.json", append(mj, '\n')},
		{"README.txt", []byte(readme(r, b, rep, repeat, replay))},
	} {
		if err := w.addBytes(f.name, f.data); err != nil {
			return 0, err
		}
	}
	sums := []byte(strings.Join(w.sums, "\n") + "\n")
	if err := w.add("SHA256SUMS", int64(len(sums)), 0o644, bytes.NewReader(sums)); err != nil {
		return 0, err
	}
	err := errors.Join(w.tw.Close(), w.gz.Close(), w.f.Close())
	if err == nil {
		err = os.Rename(w.partial, w.out)
	}
	if err != nil {
		return 0, infra.Wrap("write the bundle", err)
	}
	w.done = true
	fi, err := os.Stat(w.out)
	if err != nil {
		return 0, infra.Wrap("write the bundle", err)
	}
	return fi.Size(), nil
}

// abort removes a bundle that was not finished.
func (w *bundleWriter) abort() {
	if !w.done {
		w.f.Close()
		os.Remove(w.partial)
	}
}

func readme(r *Runner, b *Build, rep *Report, repeat int, replay string) string {
	var s strings.Builder
	title := r.File.Title
	if title == "" {
		title = "(untitled)"
	}
	fmt.Fprintf(&s, "l45 repro bundle: %s\n\n", title)
	fmt.Fprintf(&s, "Verdict: %s (verdict.txt says why, run by run).\n", rep.Summary(repeat))
	how := "l45 repro " + r.File.Name
	if r.ReplayOf != "" {
		how = "l45 repro --replay " + r.ReplayOf
	}
	fmt.Fprintf(&s, "Made %s by `%s`.\n", time.Now().UTC().Format(time.RFC3339), how)
	fmt.Fprintf(&s, "Kernel: %s (%s, as L45_KERNEL=%q)", b.Kernel.String(), map[bool]string{true: "Layer 4.5 built in", false: "Layer 4.5 loaded as a module"}[b.Kernel.Layer45Builtin], b.KernelSpec)
	if b.Tree != "" {
		fmt.Fprintf(&s, ", Layer 4.5 tree %s", b.Tree)
	}
	fmt.Fprintf(&s, ".\n\nReplay it from a layer45 checkout (after make setup), with nothing fetched or\nbuilt: the kernel, its modules and the Layer 4.5 modules come from here:\n\n    %s\n\n", replay)
	s.WriteString(`Exit status: 1 reproduced, 0 not reproduced, 125 could not run or judge.
A replay writes a bundle of its own. repro.yaml is the file as written: to
run it against another tree or kernel, put it back beside the host files it
names (their copies are in files/GUEST/PATH) and run l45 repro on it.

Contents:
  repro.yaml        the repro file as given
  verdict.txt       reproduced or not, and why, run by run (manifest.json too)
  SHA256SUMS        sha256 of every other file (sha256sum -c SHA256SUMS)
  host.txt          QEMU, the guests' programs, the accelerator, the checkout
  kernel/           the kernel booted: kernel.json (exact package versions),
                    vmlinuz, modules/RELEASE/ (the kernel modules the guests
                    load), build/.config
  modules/          the Layer 4.5 modules loaded (.ko) and build.log
  tree.sha256       sha256 of the Layer 4.5 tree's source files
  files/GUEST/PATH  host files copied into the guests
  runs/N/           each run: consoles (NAME.console.txt), QEMU command lines
                    (NAME.qemu.txt), kernel logs (NAME.dmesg.txt), trace
                    buffers (NAME.trace.txt), the link's capture (lan.pcap) and
                    its decoding (wire.txt), each step's command, status and
                    output (steps/), the run's verdict (verdict.txt). A
                    guest restored from a snapshot (the default; its
                    NAME.qemu.txt says so) has a console that starts at the
                    restore, and the boot its snapshot was saved after in
                    NAME.snapshot-boot.console.txt; L45_SNAPSHOT=0 boots
                    every guest.
`)
	return s.String()
}

// Unpacked is a bundle unpacked for a replay.
type Unpacked struct {
	// Path is the bundle file; Dir where it was unpacked.
	Path, Dir string
	File      *File
	Manifest  manifest
}

// OpenBundle unpacks the bundle at file into a temporary folder (Close
// removes it) and reads its repro file and manifest.
func OpenBundle(file string) (*Unpacked, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dir, err := os.MkdirTemp("", "l45-replay-")
	if err != nil {
		return nil, infra.Wrap("unpack the bundle", err)
	}
	u := &Unpacked{Path: file, Dir: dir}
	if err := untar(f, dir); err != nil {
		u.Close()
		return nil, fmt.Errorf("%s is not an l45 repro bundle: %w", file, err)
	}
	mj, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err == nil {
		err = json.Unmarshal(mj, &u.Manifest)
	}
	if err != nil {
		u.Close()
		return nil, fmt.Errorf("%s is not an l45 repro bundle (manifest.json: %w)", file, err)
	}
	if u.Manifest.Format != bundleFormat {
		u.Close()
		return nil, fmt.Errorf("%s is a bundle of format %d; this l45 reads format %d", file, u.Manifest.Format, bundleFormat)
	}
	src, err := os.ReadFile(filepath.Join(dir, "repro.yaml"))
	if err != nil {
		u.Close()
		return nil, fmt.Errorf("%s holds no repro.yaml: %w", file, err)
	}
	if u.File, err = ParseBytes(file+":repro.yaml", src); err != nil {
		u.Close()
		return nil, err
	}
	u.File.Dir = dir
	return u, nil
}

// untar unpacks a bundle's one folder into dir.
func untar(r io.Reader, dir string) error {
	gz, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		_, rel, ok := strings.Cut(path.Clean(hdr.Name), "/")
		if !ok || hdr.Typeflag != tar.TypeReg {
			continue
		}
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("unsafe path %q", hdr.Name)
		}
		to := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(hdr.Mode).Perm())
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// Close removes the unpacked folder.
func (u *Unpacked) Close() { os.RemoveAll(u.Dir) }

// KernelDir is the bundled kernel, for the dir: provider.
func (u *Unpacked) KernelDir() string { return filepath.Join(u.Dir, "kernel") }

// Modules maps each bundled Layer 4.5 module to its .ko.
func (u *Unpacked) Modules() map[string]string {
	out := map[string]string{}
	kos, _ := filepath.Glob(filepath.Join(u.Dir, "modules", "*.ko"))
	for _, ko := range kos {
		out[strings.TrimSuffix(filepath.Base(ko), ".ko")] = ko
	}
	return out
}

// Input reads a bundled copy of a file the repro file copies in.
func (u *Unpacked) Input(g string, c Copy) ([]byte, error) {
	return os.ReadFile(filepath.Join(u.Dir, "files", g, filepath.FromSlash(c.To)))
}

// Read returns a file of the bundle ("" when it has none).
func (u *Unpacked) Read(name string) string {
	b, _ := os.ReadFile(filepath.Join(u.Dir, filepath.FromSlash(name)))
	return string(b)
}

// Missing lists what a replay needs and the bundle lacks or holds damaged
// (its sha256 is not SHA256SUMS's), each with where to get it.
func (u *Unpacked) Missing() []string {
	var out []string
	sums := map[string]string{}
	for _, l := range strings.Split(u.Read("SHA256SUMS"), "\n") {
		if sum, name, ok := strings.Cut(l, "  "); ok {
			sums[name] = sum
		}
	}
	need := func(name, where string) {
		p := filepath.Join(u.Dir, filepath.FromSlash(name))
		data, err := os.ReadFile(p)
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s is missing: %s", name, where))
		case sums[name] != "" && sums[name] != fmt.Sprintf("%x", sha256.Sum256(data)):
			out = append(out, fmt.Sprintf("%s is damaged (its sha256 is not the one in SHA256SUMS): %s", name, where))
		}
	}
	k := u.Manifest.Kernel
	kernelWhere := u.kernelSource()
	var km struct {
		Image      string `json:"image"`
		ModulesDir string `json:"modules_dir"`
	}
	need("kernel/kernel.json", "the kernel's description (write it as kernels.Pack does)")
	if json.Unmarshal([]byte(u.Read("kernel/kernel.json")), &km) == nil && km.Image != "" {
		need(path.Join("kernel", km.Image), "the kernel image: "+kernelWhere)
		need(path.Join("kernel", km.ModulesDir, "modules.dep"), "the kernel's modules index lib/modules/"+k.Release+"/modules.dep: "+kernelWhere)
	}
	modules := []string{}
	if !k.Layer45Builtin {
		modules = append(modules, guest.CoreModule)
	}
	for _, g := range []string{Server, Client} {
		for _, m := range u.File.Guest(g).Modules {
			modules = append(modules, m.Name)
		}
	}
	for _, m := range modules {
		need("modules/"+m+".ko", fmt.Sprintf("build the Layer 4.5 tree whose sources tree.sha256 lists (it was %s) for kernel %s (L45_TREE=TREE L45_KERNEL=%s l45 setup, then the build's %s.ko in the cache; its sha256 was %s)",
			cmp.Or(u.Manifest.Tree, "not recorded"), k.Release, u.Manifest.KernelSpec, m, cmp.Or(u.Manifest.Modules[m], "not recorded")))
	}
	for _, g := range []string{Server, Client} {
		for _, c := range u.File.Guest(g).Files {
			need(path.Join("files", g, c.To), fmt.Sprintf("the host file %s that the repro file copies to %s in the %s", c.From, c.To, g))
		}
	}
	return out
}

// kernelSource says where the bundled kernel's files come from.
func (u *Unpacked) kernelSource() string {
	k := u.Manifest.Kernel
	if strings.HasPrefix(k.Provider, "debian") {
		var pk []string
		for _, p := range k.Packages {
			pk = append(pk, fmt.Sprintf("%s=%s (https://snapshot.debian.org/binary/%s/)", p.Name, p.Version, p.Name))
		}
		return fmt.Sprintf("it is in Debian's %s; the archive keeps every version at snapshot.debian.org: unpack the .deb with dpkg -x and put its boot/vmlinuz-%s (or usr/lib/modules/%s/vmlinuz) at kernel/vmlinuz and its lib/modules/%s files under kernel/modules/%s",
			strings.Join(pk, ", "), k.Release, k.Release, k.Release, k.Release)
	}
	return fmt.Sprintf("rebuild it with L45_KERNEL=%s l45 setup from the Layer 4.5 tree whose sources tree.sha256 lists, and take the image and lib/modules/%s from the cache entry", u.Manifest.KernelSpec, k.Release)
}
