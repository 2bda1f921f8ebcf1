// Package kmsg parses /dev/kmsg records and reads them from the kernel.
//
// A /dev/kmsg record (Documentation/ABI/testing/dev-kmsg) is
//
//	PRIO,SEQ,USEC,FLAGS[,MORE...];TEXT
//	 KEY=VALUE
//	 ...
//
// where PRIO is facility<<3 | level, TEXT escapes bytes below 0x20, above
// 0x7e and the backslash itself as \xNN, and the optional continuation lines
// (starting with a space) carry a dictionary. One read(2) returns one record.
package kmsg

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"layer45/vmimages/agent/proto"
)

// Record is one parsed record.
type Record = proto.LogRecord

// Parse parses one record as read from /dev/kmsg (one read(2)), with or
// without its trailing newline and dictionary lines.
func Parse(raw string) (Record, error) {
	line := raw
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	semi := strings.IndexByte(line, ';')
	if semi < 0 {
		return Record{}, fmt.Errorf("kmsg: no ';' in record %q", clip(line))
	}
	fields := strings.Split(line[:semi], ",")
	if len(fields) < 3 {
		return Record{}, fmt.Errorf("kmsg: short header in record %q", clip(line))
	}
	prio, err := strconv.ParseUint(fields[0], 10, 32)
	if err != nil {
		return Record{}, fmt.Errorf("kmsg: bad priority in record %q", clip(line))
	}
	seq, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return Record{}, fmt.Errorf("kmsg: bad sequence number in record %q", clip(line))
	}
	usec, err := strconv.ParseUint(fields[2], 10, 64)
	if err != nil {
		return Record{}, fmt.Errorf("kmsg: bad timestamp in record %q", clip(line))
	}
	return Record{
		Seq:      seq,
		Level:    int(prio & 7),
		Facility: int(prio >> 3),
		Usec:     usec,
		Text:     Unescape(line[semi+1:]),
	}, nil
}

// ParseAll parses a text holding several records one after another (as a
// test fixture or a saved dump would), attaching dictionary lines to the
// record before them. Lines that are not records are reported in the error
// (joined) but do not stop parsing.
func ParseAll(text string) ([]Record, error) {
	var recs []Record
	var errs []error
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == ' ' {
			continue
		}
		r, err := Parse(line)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		recs = append(recs, r)
	}
	return recs, errors.Join(errs...)
}

// Unescape undoes the kernel's \xNN escaping of record text.
func Unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Source yields raw records, one per call, and io.EOF when none is left
// right now. /dev/kmsg opened non-blocking is one (see Open).
type Source interface {
	Next() (string, error)
	Close() error
}

// Collect reads src to its end and returns the records with Seq >= since,
// at most max of them (max <= 0: no limit). next is the cursor for the
// following call: one past the last record returned, or since when none
// was. more says records were left out because of max. Records that do not
// parse are skipped.
func Collect(src Source, since uint64, max int) (recs []Record, next uint64, more bool, err error) {
	next = since
	for {
		raw, err := src.Next()
		if err == io.EOF {
			return recs, next, more, nil
		}
		if err != nil {
			return recs, next, more, err
		}
		r, perr := Parse(raw)
		if perr != nil || r.Seq < since {
			continue
		}
		if max > 0 && len(recs) >= max {
			more = true
			return recs, next, more, nil
		}
		recs = append(recs, r)
		next = r.Seq + 1
	}
}

// Lines reads src to its end and returns the text of each record, the way
// insmod's caller wants to see what the kernel said.
func Lines(src Source) ([]string, error) {
	recs, _, _, err := Collect(src, 0, 0)
	lines := make([]string, 0, len(recs))
	for _, r := range recs {
		lines = append(lines, r.Text)
	}
	return lines, err
}
