package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"layer45/vmimages/guest"
)

func TestEndpoint(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "netlink")
	if nl, err := endpoint("", file); err != nil || nl != guest.DefaultNetlink {
		t.Fatalf("no flag, no file: %+v, %v; want the contract's", nl, err)
	}
	if err := os.WriteFile(file, []byte("genl:L45\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if nl, err := endpoint("", file); err != nil || nl != (guest.Netlink{Family: "L45"}) {
		t.Fatalf("from the file: %+v, %v", nl, err)
	}
	if nl, err := endpoint("17", file); err != nil || nl != (guest.Netlink{Protocol: 17}) {
		t.Fatalf("the flag wins over the file: %+v, %v", nl, err)
	}
	if err := os.WriteFile(file, []byte("tcp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := file + `: netlink "tcp": ` + guest.ErrNetlinkSpec.Error()
	if _, err := endpoint("", file); err == nil || err.Error() != want {
		t.Fatalf("a bad file: %v; want %s", err, want)
	}
}

func TestFamilyRequestBytes(t *testing.T) {
	got := familyRequest("L45", 7, 99)
	ne := binary.NativeEndian
	want := make([]byte, 0, 28)
	want = ne.AppendUint32(want, 28)
	want = ne.AppendUint16(want, unix.GENL_ID_CTRL)
	want = ne.AppendUint16(want, unix.NLM_F_REQUEST)
	want = ne.AppendUint32(want, 7)
	want = ne.AppendUint32(want, 99)
	want = append(want, unix.CTRL_CMD_GETFAMILY, 1, 0, 0)
	want = ne.AppendUint16(want, 8) // attribute: header and "L45\x00"
	want = ne.AppendUint16(want, unix.CTRL_ATTR_FAMILY_NAME)
	want = append(want, 'L', '4', '5', 0)
	if !bytes.Equal(got, want) {
		t.Fatalf("familyRequest:\n got %x\nwant %x", got, want)
	}
}

// reply is a generic netlink reply of the given attributes.
func reply(attrs ...[]byte) []byte {
	m := genlMessage(0x20, 1, 0, 1, attrs...)
	binary.NativeEndian.PutUint16(m[6:], 0)
	return m
}

func errorReply(errno int32) []byte {
	body := binary.NativeEndian.AppendUint32(nil, uint32(-errno))
	return message(unix.NLMSG_ERROR, 0, 1, 0, append(body, make([]byte, 16)...))
}

func TestGenlAttr(t *testing.T) {
	id := binary.NativeEndian.AppendUint16(nil, 0x1d)
	tests := []struct {
		name    string
		reply   []byte
		typ     uint16
		want    []byte
		wantErr string
	}{
		{"found after padding", reply(attr(2, []byte("L45\x00\x00")), attr(1, id)), 1, id, ""},
		{"odd length", reply(attr(1, []byte(`{"ID":1}`+"\x00"))), 1, []byte(`{"ID":1}` + "\x00"), ""},
		{"missing", reply(attr(2, []byte("x"))), 1, nil, "reply lacks attribute 1"},
		{"unknown family", errorReply(int32(unix.ENOENT)), 1, nil, "the kernel refused: no such file or directory"},
		{"bare ack", errorReply(0), 1, nil, "the kernel acknowledged without a reply"},
		{"no genl header", message(0x20, 0, 1, 0, []byte{1}), 1, nil, "reply without a generic netlink header (17 bytes)"},
		{"bad attribute length", reply([]byte{200, 0, 1, 0}), 1, nil, "malformed attribute of length 200 in 4 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := genlAttr(tt.reply, tt.typ)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if fam, err := familyID(reply(attr(unix.CTRL_ATTR_FAMILY_ID, id))); err != nil || fam != 0x1d {
		t.Fatalf("familyID = %#x, %v", fam, err)
	}
}
