package matrix

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"layer45/harness/artifacts"
)

// CrashTest is the harness's own test the matrix runs on every kernel:
// each kind of kernel report crash_test provokes must be recognised on
// that kernel's console, whose formats differ between releases.
const CrashTest = "TestKernelCrashFailsTheOwningTestWithItsTitle"

// CrashCheck is the outcome of CrashTest on one kernel, one entry per
// crash_test mode (its subtests).
type CrashCheck struct {
	Modes []ModeResult `json:"modes"`
	// Failed is set when the test failed outside any mode (it could not
	// boot a guest, say).
	Failed bool `json:"failed,omitempty"`
}

// ModeResult is one crash_test mode: pass, fail or skip, and the
// evidence folder of a failure.
type ModeResult struct {
	Mode     string `json:"mode"`
	Result   string `json:"result"`
	Evidence string `json:"evidence,omitempty"`
}

// OK reports whether every mode the kernel can report was recognised (a
// mode is skipped on a kernel that cannot report it: sleeping in atomic
// context without CONFIG_PREEMPT_COUNT).
func (c *CrashCheck) OK() bool {
	if c == nil || c.Failed || len(c.Modes) == 0 {
		return false
	}
	passed := 0
	for _, m := range c.Modes {
		switch m.Result {
		case "pass":
			passed++
		case "skip":
		default:
			return false
		}
	}
	return passed > 0
}

// cell is the table's entry for the check.
func (c *CrashCheck) cell() string {
	if c == nil {
		return "MISSING"
	}
	passed, skipped := 0, 0
	for _, m := range c.Modes {
		switch m.Result {
		case "pass":
			passed++
		case "skip":
			skipped++
		}
	}
	word := "PASS"
	if !c.OK() {
		word = "FAIL"
	}
	cell := fmt.Sprintf("%s %d/%d", word, passed, len(c.Modes)-skipped)
	if skipped > 0 {
		cell += fmt.Sprintf(" (%d skipped)", skipped)
	}
	return cell
}

// ReadCrashCheck reads CrashTest's results from a `go test -json` stream,
// copying its output to echo when echo is not nil.
func ReadCrashCheck(r io.Reader, echo io.Writer) (*CrashCheck, error) {
	c := &CrashCheck{}
	modes := map[string]*ModeResult{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	sawTest := false
	for sc.Scan() {
		var ev struct {
			Action, Test, Output, Key, Value string
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			// go test writes build failures as text.
			if echo != nil {
				fmt.Fprintln(echo, sc.Text())
			}
			continue
		}
		if echo != nil && ev.Action == "output" {
			io.WriteString(echo, ev.Output)
		}
		if ev.Test != CrashTest && !strings.HasPrefix(ev.Test, CrashTest+"/") {
			continue
		}
		sawTest = true
		mode, sub := strings.CutPrefix(ev.Test, CrashTest+"/")
		switch {
		case !sub && ev.Action == "fail":
			c.Failed = true
		case !sub:
		case ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip":
			m := modes[mode]
			if m == nil {
				m = &ModeResult{Mode: mode}
				modes[mode] = m
			}
			m.Result = ev.Action
		case ev.Action == "attr" && ev.Key == artifacts.AttrEvidence:
			if modes[mode] == nil {
				modes[mode] = &ModeResult{Mode: mode}
			}
			modes[mode].Evidence = ev.Value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !sawTest {
		return nil, fmt.Errorf("the stream has no result of %s (did it build?)", CrashTest)
	}
	for _, m := range modes {
		c.Modes = append(c.Modes, *m)
	}
	sort.Slice(c.Modes, func(i, j int) bool { return c.Modes[i].Mode < c.Modes[j].Mode })
	return c, nil
}
