package cache

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// EnvMax names the environment variable bounding the cache's size.
const EnvMax = "L45_CACHE_MAX"

// DefaultMax is the bound when $L45_CACHE_MAX is unset: 30 GiB holds the
// default Debian kernel with its headers (~0.5 GiB), two or three kernels
// built from source (several GiB each, more with :debug) and their guest
// images (~75 MiB each) and module builds, that is a typical kernel matrix,
// while keeping a runaway matrix from filling the disk.
const DefaultMax int64 = 30 << 30

// Unlimited is the bound that never evicts.
const Unlimited int64 = -1

// sizeHelp says what a size may look like; it ends every parse error.
const sizeHelp = `write bytes or a number with a unit, e.g. 20G, 500M, 1.5T, 1073741824 (K, M, G, T are powers of 1024; KiB, KB, ... mean the same)`

// units maps each accepted unit, upper case, to its multiple.
var units = map[string]int64{
	"": 1, "B": 1,
	"K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
	"M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
	"G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30,
	"T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40,
}

// ParseSize reads a size in bytes: a plain number of bytes or a number
// (fractions allowed) followed by K, M, G or T, binary multiples (1G is
// 1024³ bytes), case-insensitive, optionally written KiB/KB, MiB/MB, ...
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("size %q is not a number; %s", s, sizeHelp)
	}
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("size %q has an unknown unit %q; %s", s, strings.TrimSpace(t[i:]), sizeHelp)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q is not a number; %s", s, sizeHelp)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// ParseMax reads a bound: a size as ParseSize reads it, or "off", "none" or
// "unlimited" for no bound (Unlimited). 0 is a bound: it keeps only entries
// in use (and the entry Get just built).
func ParseMax(s string) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "off", "none", "unlimited":
		return Unlimited, nil
	}
	return ParseSize(s)
}

// maxFromEnv is the bound from $L45_CACHE_MAX and a note saying where it
// came from.
func maxFromEnv() (int64, string, error) {
	v, ok := os.LookupEnv(EnvMax)
	if !ok || strings.TrimSpace(v) == "" {
		return DefaultMax, "default; set " + EnvMax + " to change", nil
	}
	n, err := ParseMax(v)
	if err != nil {
		return 0, "", fmt.Errorf("cache: %s=%q is invalid: %w (or \"off\" for no bound)", EnvMax, v, err)
	}
	return n, EnvMax + "=" + v, nil
}

// FormatSize writes n bytes for a person: 512 B, 75.3 MiB, 30 GiB.
func FormatSize(n int64) string {
	if n < 0 {
		return "none"
	}
	if n < 1<<10 {
		return fmt.Sprintf("%d B", n)
	}
	names := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	u := 0
	for v >= 1023.95 && u < len(names)-1 {
		v /= 1024
		u++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + " " + names[u]
}

// Max is the cache's bound in bytes (Unlimited for none).
func (c *Cache) Max() int64 { return c.max }

// SetMax changes the bound Get evicts to; Unlimited turns eviction off.
func (c *Cache) SetMax(n int64) {
	c.max = n
	c.from = "set by the program"
}

// Bound describes the bound and where it came from, for messages.
func (c *Cache) Bound() string {
	if c.max < 0 {
		return "none (" + c.from + ")"
	}
	return FormatSize(c.max) + " (" + c.from + ")"
}
