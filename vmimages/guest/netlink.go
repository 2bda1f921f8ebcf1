package guest

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Netlink is how l45ctl reaches a Layer 4.5 core's control interface: a
// netlink protocol number of its own (the contract's, 25) or a generic
// netlink family, resolved by name when l45ctl runs. Trees other than the
// project's may use another; the host reads it from the tree's settings
// and hands it to l45ctl at run time (NetlinkFile), so one guest image
// serves every tree.
type Netlink struct {
	// Protocol is the netlink protocol number when Family is empty.
	Protocol int
	// Family is a generic netlink family name. A request is then command
	// GenlCommand carrying the ASCII request as the NUL-terminated string
	// attribute GenlAttr, and the reply's first such attribute is the reply.
	Family string
}

// Generic netlink framing of a request (see Netlink.Family).
const (
	GenlCommand = 1
	GenlAttr    = 1
)

// DefaultNetlink is the contract's control interface (R16): protocol 25.
var DefaultNetlink = Netlink{Protocol: 25}

// NetlinkFile holds, in a guest, the Netlink spec l45ctl uses when not told
// with -netlink. The host writes it when it loads a core whose interface
// is not DefaultNetlink; without it l45ctl uses DefaultNetlink.
const NetlinkFile = "/etc/l45/netlink"

// MaxNetlinkProtocol is the last netlink protocol number (MAX_LINKS - 1).
const MaxNetlinkProtocol = 31

// genlFamily is what the kernel accepts as a family name (GENL_NAMSIZ 16,
// with its NUL).
var genlFamily = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// ErrNetlinkSpec is what every malformed spec wraps.
var ErrNetlinkSpec = errors.New("want a netlink protocol number (0-31, e.g. 25) or genl:FAMILY (a generic netlink family name of up to 15 characters)")

// ParseNetlink reads a spec: "25" (a protocol number) or "genl:FAMILY".
func ParseNetlink(spec string) (Netlink, error) {
	if fam, ok := strings.CutPrefix(spec, "genl:"); ok {
		if !genlFamily.MatchString(fam) {
			return Netlink{}, fmt.Errorf("netlink %q: %w", spec, ErrNetlinkSpec)
		}
		return Netlink{Family: fam}, nil
	}
	n, err := strconv.Atoi(spec)
	if err != nil || n < 0 || n > MaxNetlinkProtocol || strconv.Itoa(n) != spec {
		return Netlink{}, fmt.Errorf("netlink %q: %w", spec, ErrNetlinkSpec)
	}
	return Netlink{Protocol: n}, nil
}

// String is the spec ParseNetlink reads back.
func (n Netlink) String() string {
	if n.Family != "" {
		return "genl:" + n.Family
	}
	return strconv.Itoa(n.Protocol)
}
