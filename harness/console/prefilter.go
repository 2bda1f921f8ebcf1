package console

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"
)

// Most console lines are no header and no line of a report, and a
// regular expression that is a union of many patterns costs time in
// proportion to their number even to fail. The tables are therefore
// indexed by the first byte their patterns can match: a line is tried only
// against the patterns that can begin with its first byte.

// byteSet is a set of bytes.
type byteSet [256]bool

// firstBytes returns the bytes a match of the anchored pattern can begin
// with, and whether it can match the empty string (then it may begin with
// anything).
func firstBytes(pattern string) (set byteSet, empty bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		panic(err)
	}
	return first(re.Simplify())
}

func first(re *syntax.Regexp) (set byteSet, empty bool) {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return set, true
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return set, true
		}
		addRune(&set, re.Rune[0], re.Flags&syntax.FoldCase != 0)
		return set, false
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if r >= 0x80 {
					addRune(&set, r, false)
					break
				}
				addRune(&set, r, false)
			}
		}
		return set, false
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		for b := range set {
			set[b] = b != '\n' || re.Op == syntax.OpAnyChar
		}
		return set, false
	case syntax.OpCapture:
		return first(re.Sub[0])
	case syntax.OpStar, syntax.OpQuest:
		set, _ = first(re.Sub[0])
		return set, true
	case syntax.OpPlus:
		return first(re.Sub[0])
	case syntax.OpRepeat:
		set, empty = first(re.Sub[0])
		return set, empty || re.Min == 0
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			s, e := first(sub)
			for b, ok := range s {
				set[b] = set[b] || ok
			}
			if !e {
				return set, false
			}
		}
		return set, true
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			s, e := first(sub)
			for b, ok := range s {
				set[b] = set[b] || ok
			}
			empty = empty || e
		}
		return set, empty
	}
	// Anything else: assume it may begin with any byte.
	for b := range set {
		set[b] = true
	}
	return set, true
}

// addRune adds the first byte of r's UTF-8 encoding (of both cases when
// fold is set).
func addRune(set *byteSet, r rune, fold bool) {
	if r >= 0x80 {
		for b := 0xc0; b < 256; b++ {
			set[b] = true
		}
		return
	}
	set[r] = true
	if fold {
		set[unicode.ToUpper(r)] = true
		set[unicode.ToLower(r)] = true
	}
}

// lineSet matches a text against a list of patterns, each anchored at the
// start of the text (and at its end if whole is set), as their union
// would.
type lineSet struct {
	byFirst [256]*regexp.Regexp
	empty   *regexp.Regexp // the patterns that can match the empty string
}

func newLineSet(patterns []string, whole bool) *lineSet {
	end := ``
	if whole {
		end = `$`
	}
	var groups [256][]string
	var empty []string
	for _, p := range patterns {
		set, e := firstBytes(p)
		for b, ok := range set {
			if ok || e {
				groups[b] = append(groups[b], p)
			}
		}
		if e {
			empty = append(empty, p)
		}
	}
	s := &lineSet{}
	for b, g := range groups {
		if len(g) > 0 {
			s.byFirst[b] = regexp.MustCompile(`^(?:` + strings.Join(g, "|") + `)` + end)
		}
	}
	if len(empty) > 0 {
		s.empty = regexp.MustCompile(`^(?:` + strings.Join(empty, "|") + `)` + end)
	}
	return s
}

// MatchString reports whether one of the patterns matches at the start of
// text.
func (s *lineSet) MatchString(text string) bool {
	re := s.empty
	if text != "" {
		re = s.byFirst[text[0]]
	}
	return re != nil && re.MatchString(text)
}
