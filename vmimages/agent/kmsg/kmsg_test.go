package kmsg

import (
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Records as Debian's 6.1 kernel prints them in /dev/kmsg.
const fixture = `6,0,0,-;Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.140-1 (2025-05-22)
6,1,0,-;Command line: console=ttyS0 panic=-1 l45.hostname=t
4,512,2871234,-;layer4_5: loading out-of-tree module taints kernel.
4,513,2871240,-;layer4_5: module verification failed: signature and/or required key missing - tainting kernel
6,514,2903311,-,caller=T87;virtio_net virtio1 eth0: renamed from \x5cx\x09tab
 SUBSYSTEM=virtio
 DEVICE=+virtio:virtio1
13,515,3000001,-;l45-agent: user space line
3,516,3100000,c;broken\x0aline
`

func TestParseAll(t *testing.T) {
	got, err := ParseAll(fixture)
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Seq: 0, Level: 6, Usec: 0, Text: "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.140-1 (2025-05-22)"},
		{Seq: 1, Level: 6, Usec: 0, Text: "Command line: console=ttyS0 panic=-1 l45.hostname=t"},
		{Seq: 512, Level: 4, Usec: 2871234, Text: "layer4_5: loading out-of-tree module taints kernel."},
		{Seq: 513, Level: 4, Usec: 2871240, Text: "layer4_5: module verification failed: signature and/or required key missing - tainting kernel"},
		{Seq: 514, Level: 6, Usec: 2903311, Text: "virtio_net virtio1 eth0: renamed from \\x\ttab"},
		{Seq: 515, Level: 5, Facility: 1, Usec: 3000001, Text: "l45-agent: user space line"},
		{Seq: 516, Level: 3, Usec: 3100000, Text: "broken\nline"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseAll (-want +got):\n%s", d)
	}
	if s := got[2].String(); s != "[    2.871234] layer4_5: loading out-of-tree module taints kernel." {
		t.Errorf("String() = %q", s)
	}
}

func TestParseErrors(t *testing.T) {
	for _, raw := range []string{
		"",
		"no semicolon here",
		"6,1;short header",
		"x,1,2,-;bad prio",
		"6,y,2,-;bad seq",
		"6,1,z,-;bad usec",
	} {
		if r, err := Parse(raw); err == nil {
			t.Errorf("Parse(%q) = %+v, want error", raw, r)
		}
	}
	// A record with its dictionary, as one read(2) returns it.
	r, err := Parse("6,9,10,-;hello\n SUBSYSTEM=net\n")
	if err != nil || r.Text != "hello" || r.Seq != 9 {
		t.Errorf("Parse with dictionary = %+v, %v", r, err)
	}
	if _, err := ParseAll("6,1,2,-;ok\ngarbage\n"); err == nil {
		t.Error("ParseAll with a garbage line: no error")
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        "plain",
		`a\x0ab`:       "a\nb",
		`\x5c`:         `\`,
		`trailing \x4`: `trailing \x4`,
		`bad \xzz hex`: `bad \xzz hex`,
		`\x41\x42\x43`: "ABC",
		`end \x`:       `end \x`,
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

type fakeSource struct{ raw []string }

func (f *fakeSource) Next() (string, error) {
	if len(f.raw) == 0 {
		return "", io.EOF
	}
	r := f.raw[0]
	f.raw = f.raw[1:]
	return r, nil
}
func (f *fakeSource) Close() error { return nil }

func TestCollect(t *testing.T) {
	raw := []string{
		"6,10,100,-;ten\n",
		"6,11,200,-;eleven\n",
		"garbage\n",
		"6,12,300,-;twelve\n",
		"6,13,400,-;thirteen\n",
	}
	tests := []struct {
		name     string
		since    uint64
		max      int
		wantSeqs []uint64
		wantNext uint64
		wantMore bool
	}{
		{"all", 0, 0, []uint64{10, 11, 12, 13}, 14, false},
		{"since", 12, 0, []uint64{12, 13}, 14, false},
		{"since past the end", 20, 0, nil, 20, false},
		{"limited", 0, 2, []uint64{10, 11}, 12, true},
		{"limit equals count", 11, 3, []uint64{11, 12, 13}, 14, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, next, more, err := Collect(&fakeSource{raw: append([]string(nil), raw...)}, tt.since, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			for _, r := range recs {
				seqs = append(seqs, r.Seq)
			}
			if d := cmp.Diff(tt.wantSeqs, seqs); d != "" {
				t.Errorf("seqs (-want +got):\n%s", d)
			}
			if next != tt.wantNext || more != tt.wantMore {
				t.Errorf("next, more = %d, %v; want %d, %v", next, more, tt.wantNext, tt.wantMore)
			}
		})
	}
	lines, err := Lines(&fakeSource{raw: raw})
	if err != nil || len(lines) != 4 || lines[3] != "thirteen" {
		t.Errorf("Lines = %q, %v", lines, err)
	}
}
