package boot

import (
	"fmt"
	"net/netip"
	"strings"

	"layer45/vmimages/agent/proto"
)

// Options are the l45.* options of the kernel command line.
type Options struct {
	// Hostname from l45.hostname=NAME.
	Hostname string
	// Nets from l45.net=IFACE,ADDR/PREFIX (repeatable).
	Nets []Net
	// Disks from l45.mount=DEV:DIR:FSTYPE (repeatable).
	Disks []Disk
	// Port from l45.port=NAME; default proto.DefaultPort.
	Port string
	// Errors describes l45.* options that could not be used.
	Errors []string
}

// Net is an interface to bring up with an address.
type Net struct {
	Iface string
	Addr  string // "10.0.2.15/24"
}

// Disk is a block device to mount.
type Disk struct {
	Dev, Dir, FSType string
}

// SplitCmdline splits a kernel command line into words the way the kernel
// does: on spaces, with double quotes grouping (and removed).
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

// ParseCmdline extracts the l45.* options.
func ParseCmdline(s string) Options {
	o := Options{Port: proto.DefaultPort}
	bad := func(word, why string) { o.Errors = append(o.Errors, fmt.Sprintf("%s: %s", word, why)) }
	for _, w := range SplitCmdline(s) {
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
			o.Hostname = val
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
			o.Nets = append(o.Nets, Net{Iface: iface, Addr: p.String()})
		case "l45.mount":
			first := strings.Index(val, ":")
			last := strings.LastIndex(val, ":")
			if first <= 0 || last == first || last == len(val)-1 {
				bad(w, "want l45.mount=DEV:DIR:FSTYPE")
				continue
			}
			d := Disk{Dev: val[:first], Dir: val[first+1 : last], FSType: val[last+1:]}
			if !strings.HasPrefix(d.Dev, "/") || !strings.HasPrefix(d.Dir, "/") {
				bad(w, "DEV and DIR must be absolute paths")
				continue
			}
			o.Disks = append(o.Disks, d)
		case "l45.port":
			if val == "" {
				bad(w, "empty port name")
				continue
			}
			o.Port = val
		default:
			bad(w, "unknown option")
		}
	}
	return o
}
