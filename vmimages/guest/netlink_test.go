package guest

import (
	"errors"
	"testing"
)

func TestParseNetlink(t *testing.T) {
	tests := []struct {
		spec    string
		want    Netlink
		wantErr string
	}{
		{spec: "25", want: DefaultNetlink},
		{spec: "0", want: Netlink{Protocol: 0}},
		{spec: "31", want: Netlink{Protocol: 31}},
		{spec: "genl:LAYER4_5", want: Netlink{Family: "LAYER4_5"}},
		{spec: "genl:l45.ctl-1", want: Netlink{Family: "l45.ctl-1"}},
		{spec: "", wantErr: `netlink "": ` + ErrNetlinkSpec.Error()},
		{spec: "32", wantErr: `netlink "32": ` + ErrNetlinkSpec.Error()},
		{spec: "-1", wantErr: `netlink "-1": ` + ErrNetlinkSpec.Error()},
		{spec: "025", wantErr: `netlink "025": ` + ErrNetlinkSpec.Error()},
		{spec: "+25", wantErr: `netlink "+25": ` + ErrNetlinkSpec.Error()},
		{spec: "genl:", wantErr: `netlink "genl:": ` + ErrNetlinkSpec.Error()},
		{spec: "genl:a_family_too_long", wantErr: `netlink "genl:a_family_too_long": ` + ErrNetlinkSpec.Error()},
		{spec: "genl:two words", wantErr: `netlink "genl:two words": ` + ErrNetlinkSpec.Error()},
		{spec: "NETLINK_USERSOCK", wantErr: `netlink "NETLINK_USERSOCK": ` + ErrNetlinkSpec.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseNetlink(tt.spec)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrNetlinkSpec) {
					t.Fatalf("ParseNetlink(%q) error = %v, want %q wrapping ErrNetlinkSpec", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseNetlink(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
			}
			if back, err := ParseNetlink(got.String()); err != nil || back != got {
				t.Fatalf("round trip of %q through %q: %+v, %v", tt.spec, got.String(), back, err)
			}
		})
	}
}
