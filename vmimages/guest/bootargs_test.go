package guest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"layer45/vmimages/agent/proto"
)

func TestBootArgsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		args BootArgs
		want []string // the words on the command line
	}{
		{"empty", BootArgs{}, nil},
		{"hostname", BootArgs{Hostname: "client"}, []string{"l45.hostname=client"}},
		{"hostname with space", BootArgs{Hostname: "a b"}, []string{`l45.hostname="a b"`}},
		{"nets in order", BootArgs{Nets: []Net{{"eth0", "10.0.0.20/24"}, {"eth1", "fd00::1/64"}}},
			[]string{"l45.net=eth0,10.0.0.20/24", "l45.net=eth1,fd00::1/64"}},
		{"mount", BootArgs{Mounts: []Mount{{"/dev/vda", "/persist", "ext4"}}}, []string{"l45.mount=/dev/vda:/persist:ext4"}},
		{"mount dir with colon", BootArgs{Mounts: []Mount{{"/dev/vdb", "/mnt/a:b", "xfs"}}}, []string{"l45.mount=/dev/vdb:/mnt/a:b:xfs"}},
		{"default port left out", BootArgs{Port: proto.DefaultPort}, nil},
		{"other port", BootArgs{Port: "org.example.p"}, []string{"l45.port=org.example.p"}},
		{"all", BootArgs{Hostname: "server", Nets: []Net{{"eth0", "10.0.0.20/24"}},
			Mounts: []Mount{{"/dev/vda", "/persist", "ext4"}}, Port: "p"},
			[]string{"l45.hostname=server", "l45.net=eth0,10.0.0.20/24", "l45.mount=/dev/vda:/persist:ext4", "l45.port=p"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			words := tt.args.Encode()
			if d := cmp.Diff(tt.want, words); d != "" {
				t.Errorf("Encode (-want +got):\n%s", d)
			}
			// Among other kernel arguments, as QEMU's -append passes them.
			line := "console=ttyS0 panic=-1 " + strings.Join(words, " ") + " quiet\n"
			want := tt.args
			if want.Port == "" {
				want.Port = proto.DefaultPort
			}
			if d := cmp.Diff(want, ParseBootArgs(line)); d != "" {
				t.Errorf("ParseBootArgs(%q) (-want +got):\n%s", line, d)
			}
		})
	}
}

func TestParseBootArgs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want BootArgs
	}{
		{"none", "console=ttyS0 panic=-1 quiet", BootArgs{Port: proto.DefaultPort}},
		{"quoted elsewhere", `l45.hostname="a b" x="l45.hostname=no"`, BootArgs{Hostname: "a b", Port: proto.DefaultPort}},
		{"last hostname wins", "l45.hostname=a l45.hostname=b", BootArgs{Hostname: "b", Port: proto.DefaultPort}},
		{"errors", "l45.net=eth0 l45.net=eth0,10.0.0.300/24 l45.net=,1.2.3.4/8 l45.mount=/dev/vda:/x l45.mount=vda:/x:ext4 l45.port= l45.hostname= l45.bogus=1",
			BootArgs{Port: proto.DefaultPort, Errors: []string{
				"l45.net=eth0: want l45.net=IFACE,ADDR/PREFIX",
				`l45.net=eth0,10.0.0.300/24: bad address: netip.ParsePrefix("10.0.0.300/24"): ParseAddr("10.0.0.300"): IPv4 field has value >255`,
				"l45.net=,1.2.3.4/8: want l45.net=IFACE,ADDR/PREFIX",
				"l45.mount=/dev/vda:/x: want l45.mount=DEV:DIR:FSTYPE",
				"l45.mount=vda:/x:ext4: DEV and DIR must be absolute paths",
				"l45.port=: empty port name",
				"l45.hostname=: want a host name of 1 to 64 bytes",
				"l45.bogus=1: unknown option",
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, ParseBootArgs(tt.in)); d != "" {
				t.Errorf("ParseBootArgs (-want +got):\n%s", d)
			}
		})
	}
}
