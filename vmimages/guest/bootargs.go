package guest

import (
	"fmt"
	"net/netip"
	"strings"

	"layer45/vmimages/agent/proto"
)

// BootArgs are the l45.* options of a guest's kernel command line.
type BootArgs struct {
	// Hostname from l45.hostname=NAME.
	Hostname string
	// Nets from l45.net=IFACE,ADDR/PREFIX (repeatable).
	Nets []Net
	// Mounts from l45.mount=DEV:DIR:FSTYPE (repeatable).
	Mounts []Mount
	// Port from l45.port=NAME; empty means proto.DefaultPort.
	Port string
	// Errors describes l45.* options that could not be used (parsing only).
	Errors []string
}

// Net is an interface to bring up with an address.
type Net struct {
	Iface string
	Addr  string // "10.0.2.15/24"
}

// Mount is a block device to mount before Layer 4.5's autoload.
type Mount struct {
	Dev, Dir, FSType string
}

// Encode renders the options as kernel command-line words, quoting values
// with spaces the way the kernel's parser expects.
func (a BootArgs) Encode() []string {
	var w []string
	add := func(key, val string) {
		if strings.ContainsAny(val, " \t\n") {
			val = `"` + val + `"`
		}
		w = append(w, key+"="+val)
	}
	if a.Hostname != "" {
		add("l45.hostname", a.Hostname)
	}
	for _, n := range a.Nets {
		add("l45.net", n.Iface+","+n.Addr)
	}
	for _, m := range a.Mounts {
		add("l45.mount", m.Dev+":"+m.Dir+":"+m.FSType)
	}
	if a.Port != "" && a.Port != proto.DefaultPort {
		add("l45.port", a.Port)
	}
	return w
}

// SplitCmdline splits a kernel command line into words the way the kernel
// does: on white space, with double quotes grouping (and removed).
func SplitCmdline(s string) []string {
	var words []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				words = append(words, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		words = append(words, cur.String())
	}
	return words
}

// ParseBootArgs extracts the l45.* options of a kernel command line; the
// port defaults to proto.DefaultPort. Options it cannot use are listed in
// Errors, the others still apply.
func ParseBootArgs(cmdline string) BootArgs {
	a := BootArgs{Port: proto.DefaultPort}
	bad := func(word, why string) { a.Errors = append(a.Errors, fmt.Sprintf("%s: %s", word, why)) }
	for _, w := range SplitCmdline(cmdline) {
		key, val, _ := strings.Cut(w, "=")
		if !strings.HasPrefix(key, "l45.") {
			continue
		}
		switch key {
		case "l45.hostname":
			if val == "" || len(val) > 64 {
				bad(w, "want a host name of 1 to 64 bytes")
				continue
			}
			a.Hostname = val
		case "l45.net":
			iface, addr, ok := strings.Cut(val, ",")
			if !ok || iface == "" || len(iface) > 15 || strings.ContainsAny(iface, "/ ") {
				bad(w, "want l45.net=IFACE,ADDR/PREFIX")
				continue
			}
			p, err := netip.ParsePrefix(addr)
			if err != nil {
				bad(w, "bad address: "+err.Error())
				continue
			}
			a.Nets = append(a.Nets, Net{Iface: iface, Addr: p.String()})
		case "l45.mount":
			first := strings.Index(val, ":")
			last := strings.LastIndex(val, ":")
			if first <= 0 || last == first || last == len(val)-1 {
				bad(w, "want l45.mount=DEV:DIR:FSTYPE")
				continue
			}
			m := Mount{Dev: val[:first], Dir: val[first+1 : last], FSType: val[last+1:]}
			if !strings.HasPrefix(m.Dev, "/") || !strings.HasPrefix(m.Dir, "/") {
				bad(w, "DEV and DIR must be absolute paths")
				continue
			}
			a.Mounts = append(a.Mounts, m)
		case "l45.port":
			if val == "" {
				bad(w, "empty port name")
				continue
			}
			a.Port = val
		default:
			bad(w, "unknown option")
		}
	}
	return a
}
