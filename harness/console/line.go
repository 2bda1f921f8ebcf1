package console

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// A printk stamp is the prefix printk puts in front of every console line
// when CONFIG_PRINTK_TIME is on: "[   12.345678] ", optionally followed by
// the caller field of CONFIG_PRINTK_CALLER ("[  T231] " or "[    C0] ").
// printk always prints six decimals; requiring them keeps user-space text
// such as "[1.5]" from looking like a kernel line. The stamp is searched
// anywhere in the line because user-space output without a trailing newline
// can run into the next kernel line. With printk.time=0 and
// CONFIG_PRINTK_CALLER, lines start with the caller field alone.
//
// Every console line is searched for stamps, so they are parsed by hand
// rather than with a regular expression.

// stamp is where a printk stamp was found in a line.
type stamp struct {
	start, end int    // the stamp is line[start:end], with its trailing space
	caller     string // "T231", "C0" or ""
}

// findStamp returns the first printk time stamp in s at or after from.
func findStamp(s string, from int) (stamp, bool) {
	for from < len(s) {
		i := strings.IndexByte(s[from:], '[')
		if i < 0 {
			break
		}
		start := from + i
		if end, ok := timeField(s, start); ok {
			st := stamp{start: start, end: end}
			if cend, caller, ok := callerField(s, end); ok {
				st.end, st.caller = cend, caller
			}
			if st.end < len(s) && s[st.end] == ' ' {
				st.end++
			}
			return st, true
		}
		from = start + 1
	}
	return stamp{}, false
}

// timeField parses "[ *\d+\.\d{6}\]" at s[i:] and returns its end.
func timeField(s string, i int) (int, bool) {
	i++ // '['
	for i < len(s) && s[i] == ' ' {
		i++
	}
	j := digits(s, i)
	if j == i || j >= len(s) || s[j] != '.' {
		return 0, false
	}
	k := digits(s, j+1)
	if k-(j+1) != 6 || k >= len(s) || s[k] != ']' {
		return 0, false
	}
	return k + 1, true
}

// callerField parses "\[ *[CT]\d+\]" at s[i:] and returns its end and
// the caller id.
func callerField(s string, i int) (int, string, bool) {
	if i >= len(s) || s[i] != '[' {
		return 0, "", false
	}
	i++
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i >= len(s) || s[i] != 'C' && s[i] != 'T' {
		return 0, "", false
	}
	j := digits(s, i+1)
	if j == i+1 || j >= len(s) || s[j] != ']' {
		return 0, "", false
	}
	return j + 1, s[i:j], true
}

func digits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// hasStamp reports whether s holds a printk time stamp.
func hasStamp(s string) bool {
	_, ok := findStamp(s, 0)
	return ok
}

// ansiEscape matches terminal control sequences: CSI (colours, cursor
// movement, as SeaBIOS and iPXE print them), OSC, character set selection
// and the remaining two-byte escapes.
var ansiEscape = regexp.MustCompile("\x1b\\[[0-?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)?|\x1b[()#%][ -~]|\x1b[ -~]?")

// consoleLine is one line of console output as the detector sees it.
type consoleLine struct {
	clean  string // the line without terminator, escapes and control characters
	text   string // the message: clean without the printk prefix
	kernel bool   // the line carried a printk timestamp (or caller id)
	caller string // the printk caller id, "T231" or "C0", if printed
	idx    int    // index of the console line among all lines fed
	// other marks a line kept in a report for context that is not part of
	// the report's text: user space, or another task's printk.
	other bool
}

// cleanText removes what a terminal would not show as text: escape
// sequences, carriage returns and other control characters except tabs.
// Invalid UTF-8 is replaced so that logs stay readable.
func cleanText(s string) string {
	if strings.IndexByte(s, 0x1b) >= 0 {
		s = ansiEscape.ReplaceAllString(s, "")
	}
	dirty := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			dirty = true
			break
		}
	}
	if dirty {
		s = strings.Map(func(r rune) rune {
			if (r < 0x20 && r != '\t') || r == 0x7f {
				return -1
			}
			return r
		}, s)
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

// parseLine prepares one raw console line (without its '\n') for matching.
// A line in which a second printk timestamp begins holds the messages of
// two CPUs that interleaved (or a message whose line end was lost); see
// parseLines.
func parseLine(raw string) consoleLine {
	return parseLines(raw)[0]
}

// parseLines prepares one raw console line (without its '\n') for
// matching. When more than one printk timestamp occurs in it, the line is
// cut before the second and every further one: each piece is the message
// of its own printk call. Text in front of the first timestamp (user space
// that did not end its line) stays with the first piece.
func parseLines(raw string) []consoleLine {
	clean := cleanText(strings.TrimRight(raw, "\r"))
	if strings.IndexByte(clean, '[') < 0 {
		return []consoleLine{{clean: clean, text: clean}}
	}
	var stamps []stamp
	for from := 0; ; {
		st, ok := findStamp(clean, from)
		if !ok {
			break
		}
		stamps = append(stamps, st)
		from = st.end
	}
	if len(stamps) == 0 {
		l := consoleLine{clean: clean, text: clean}
		i := strings.IndexByte(clean, '[')
		if strings.TrimLeft(clean[:i], " \t") == "" {
			if end, caller, ok := callerField(clean, i); ok {
				if end < len(clean) && clean[end] == ' ' {
					end++
				}
				l.text, l.kernel, l.caller = clean[end:], true, caller
			}
		}
		return []consoleLine{l}
	}
	out := make([]consoleLine, 0, len(stamps))
	for i, st := range stamps {
		start, end := 0, len(clean)
		if i > 0 {
			start = st.start
		}
		if i+1 < len(stamps) {
			end = stamps[i+1].start
		}
		out = append(out, consoleLine{clean: clean[start:end], text: clean[st.end:end], kernel: true, caller: st.caller})
	}
	return out
}
