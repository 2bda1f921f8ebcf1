package console

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// printkStamp finds the prefix printk puts in front of every console line
// when CONFIG_PRINTK_TIME is on: "[   12.345678] ", optionally followed by
// the caller field of CONFIG_PRINTK_CALLER ("[  T231] " or "[    C0] ").
// printk always prints six decimals; requiring them keeps user-space text
// such as "[1.5]" from looking like a kernel line. The stamp is searched
// anywhere in the line because user-space output without a trailing newline
// can run into the next kernel line.
var printkStamp = regexp.MustCompile(`\[ *\d+\.\d{6}\](?:\[ *[CT]\d+\])? ?`)

// ansiEscape matches terminal control sequences: CSI (colours, cursor
// movement, as SeaBIOS and iPXE print them), OSC, character set selection
// and the remaining two-byte escapes.
var ansiEscape = regexp.MustCompile("\x1b\\[[0-?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)?|\x1b[()#%][ -~]|\x1b[ -~]?")

// consoleLine is one line of console output as the detector sees it.
type consoleLine struct {
	clean  string // the line without terminator, escapes and control characters
	text   string // the message: clean without the printk prefix
	kernel bool   // the line carried a printk timestamp
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
func parseLine(raw string) consoleLine {
	clean := cleanText(strings.TrimRight(raw, "\r"))
	l := consoleLine{clean: clean, text: clean}
	if loc := printkStamp.FindStringIndex(clean); loc != nil {
		l.text = clean[loc[1]:]
		l.kernel = true
	}
	return l
}
