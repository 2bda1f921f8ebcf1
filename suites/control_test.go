package suites

// R16: the control interface (netlink protocol 25), driven by l45ctl in the
// client guest and parsed strictly on the host (harness/control): every
// reply must be exactly the JSON object the contract describes. These
// bodies run on TestRegistrationBuffersControl's pair.

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/suites/suite"
	"layer45/vmimages/control"
)

const challengeID = 122

func ctxBG() context.Context { return context.Background() }

var reportShape = regexp.MustCompile(`^\{"Installed":\[(\{"ID":\d+,"Activated":[01],"Count":\d+,"ts":\d+\},?)*\],` +
	`"Deprecated":\[(\{"ID":\d+,"Activated":[01],"Count":\d+,"ts":\d+\},?)*\],` +
	`"Revoked":\[(\{"ID":\d+,"ts":\d+\},?)*\]\}$`)

// The report's exact shape, field order included, and its timestamps:
// registration time for Installed, deprecation time for Deprecated,
// unregistration time for Revoked, in seconds since the epoch (the guest's
// clock comes from the host's, so they are close to the host's now).
func r16ReportFormat(t *testing.T, p *suite.Pair) {
	m := p.Client
	start := time.Now().Add(-time.Hour).Unix()
	m.MustLoadModule(t, p.Mods, "challenge", "")
	unloaded := false
	t.Cleanup(func() {
		if !unloaded && !m.Exited() {
			m.UnloadModule(context.Background(), "challenge")
		}
	})
	p.Load(t, m, "tag", suite.Params{"dest_port": 9})
	require.Equal(t, 1, suite.Result(t, m, tagID, "DEPRECATE 101 END"))
	text := suite.Raw(t, m, "CUST_REPORT")
	require.Regexp(t, reportShape, text)
	r, err := control.ParseReport([]byte(text))
	require.NoError(t, err)
	end := time.Now().Add(time.Hour).Unix()
	ch, dep, ok := r.Find(challengeID)
	require.True(t, ok, "%s", text)
	require.False(t, dep)
	require.Equal(t, control.Module{ID: challengeID, Activated: 1, Count: 0, TS: ch.TS}, ch)
	require.True(t, ch.TS >= start && ch.TS <= end, "registration ts %d is not about now", ch.TS)
	tg, dep, _ := r.Find(tagID)
	require.True(t, dep)
	require.True(t, tg.TS >= ch.TS && tg.TS <= end, "deprecation ts %d", tg.TS)

	// "CUST_REPORT END" is the same request.
	again, err := control.ParseReport([]byte(suite.Raw(t, m, "CUST_REPORT END")))
	require.NoError(t, err)
	require.Equal(t, r, again)

	revoked := suite.Revoked(r, challengeID)
	m.MustUnloadModule(t, "challenge")
	unloaded = true
	r = suite.Report(t, m)
	require.Equal(t, revoked+1, suite.Revoked(r, challengeID), "the unloaded module joins the revoked history")
	var newest int64
	for _, e := range r.Revoked {
		if e.ID == challengeID && e.TS > newest {
			newest = e.TS
		}
	}
	require.True(t, newest >= ch.TS && newest <= end, "revocation ts %d", newest)
	_, _, ok = r.Find(challengeID)
	require.False(t, ok)
}

// DEPRECATE, TOGGLE and PRIORITY answer {"ID":n,"Result":1} for a known
// module and change it (the module's own variables, the report), and
// {"ID":n,"Result":0} for an unknown one. TOGGLE and PRIORITY also work on
// a deprecated module (kernel/README.md).
func r16Commands(t *testing.T, p *suite.Pair) {
	m := p.Client
	p.Load(t, m, "tag", suite.Params{"dest_port": 9, "priority": 100})

	require.Equal(t, 1, suite.Result(t, m, tagID, "TOGGLE 101 0 END"))
	require.Equal(t, 0, suite.ModParamInt(t, m, "tag", "activate"))
	e, _ := suite.Entry(t, m, tagID)
	require.Equal(t, 0, e.Activated)
	require.Equal(t, 1, suite.Result(t, m, tagID, "TOGGLE 101 1 END"))
	require.Equal(t, 1, suite.ModParamInt(t, m, "tag", "activate"))

	require.Equal(t, 1, suite.Result(t, m, tagID, "PRIORITY 101 42 END"))
	require.Equal(t, 42, suite.ModParamInt(t, m, "tag", "priority"))

	require.Equal(t, 1, suite.Result(t, m, tagID, "DEPRECATE 101 END"))
	_, dep := suite.Entry(t, m, tagID)
	require.True(t, dep)
	require.Equal(t, 0, suite.Result(t, m, tagID, "DEPRECATE 101 END"), "already deprecated")
	require.Equal(t, 1, suite.Result(t, m, tagID, "TOGGLE 101 0 END"), "TOGGLE works on a deprecated module")
	require.Equal(t, 1, suite.Result(t, m, tagID, "PRIORITY 101 7 END"))
	require.Equal(t, 7, suite.ModParamInt(t, m, "tag", "priority"))
	e, dep = suite.Entry(t, m, tagID)
	require.True(t, dep)
	require.Equal(t, 0, e.Activated)

	for _, req := range []string{"DEPRECATE 4242 END", "TOGGLE 4242 1 END", "PRIORITY 4242 3 END"} {
		require.Equal(t, 0, suite.Result(t, m, 4242, req), "%s: unknown id", req)
	}
}

// CHALLENGE calls the module's challenge_function: response =
// hex(challenge[i] ^ iv[i % len(iv)] ^ key). An unknown id (contract
// section 4: it dereferenced NULL) and a module without the function get
// {"ID":n,"ERROR":...}.
func r16Challenge(t *testing.T, p *suite.Pair) {
	m := p.Client
	const key = 0x3c
	p.Load(t, m, "challenge", suite.Params{"key": key})
	p.Load(t, m, "tag", suite.Params{"dest_port": 9})
	iv := []byte{0x01, 0x80, 0xfe}
	ch := []byte("layer 4.5 challenge\x00\xff")
	want := make([]byte, len(ch))
	for i := range ch {
		want[i] = ch[i] ^ iv[i%len(iv)] ^ key
	}
	r := suite.Reply(t, m, control.ChallengeRequest(challengeID, iv, ch))
	require.Empty(t, r.Error, "%+v", r)
	require.NotNil(t, r.ID)
	require.Equal(t, challengeID, *r.ID)
	require.Nil(t, r.Result)
	require.Equal(t, hex.EncodeToString(iv), strings.ToLower(r.IV))
	require.Equal(t, hex.EncodeToString(want), strings.ToLower(r.Response))

	for _, tc := range []struct {
		id   int
		what string
	}{{4242, "unknown id"}, {tagID, "module without a challenge function"}} {
		r := suite.Reply(t, m, control.ChallengeRequest(tc.id, iv, ch))
		require.NotNil(t, r.ID, "%s: %+v", tc.what, r)
		require.Equal(t, tc.id, *r.ID, tc.what)
		require.NotEmpty(t, r.Error, "%s: %+v", tc.what, r)
		require.Empty(t, r.Response, tc.what)
	}
	// Not hex.
	r = suite.Reply(t, m, fmt.Sprintf("CHALLENGE %d 0g %s END", challengeID, hex.EncodeToString(ch)))
	require.NotEmpty(t, r.Error, "%+v", r)
	require.Empty(t, r.Response)
}

// Malformed, unknown, oversized and unterminated requests get
// {"ERROR":"..."} and change nothing: the report and the module's
// variables are the same afterwards. Unknown commands once replied with
// uninitialised memory (contract section 4): the strict parse catches
// anything but the one JSON object.
func r16Malformed(t *testing.T, p *suite.Pair) {
	m := p.Client
	p.Load(t, m, "tag", suite.Params{"dest_port": 9, "priority": 100})
	before := suite.Report(t, m)
	// Oversized: a valid command padded past 256 bytes with leading zeros
	// (the number is still 101); it must be refused, not carried out.
	long := "DEPRECATE " + strings.Repeat("0", 300) + "101 END"
	cases := []struct {
		req   string
		flags []string
	}{
		{"", nil},
		{"HELLO", nil},
		{"HELLO 101 END", nil},
		{"cust_report", nil},
		{"CUST_REPORT 101 END", nil},
		{"DEPRECATE", nil},
		{"DEPRECATE 101", nil},
		{"DEPRECATE END", nil},
		{"DEPRECATE abc END", nil},
		{"DEPRECATE -1 END", nil},
		{"DEPRECATE 70000 END", nil},
		{"DEPRECATE 101 101 END", nil},
		{"TOGGLE 101 2 END", nil},
		{"TOGGLE 101 END", nil},
		{"TOGGLE 101 0", nil},
		{"PRIORITY 101 END", nil},
		{"PRIORITY 101 x END", nil},
		{"PRIORITY 101 65536 END", nil},
		{"CHALLENGE 101 END", nil},
		{long, nil},
		{"DEPRECATE 101", []string{"-raw"}},  // unterminated: no END, no NUL
		{"TOGGLE 101 0 E", []string{"-raw"}}, // cut short
		{"TOGGLE\x01101 0 END", []string{"-raw"}},
		{"PRIORITY 101 5 END\x7f", []string{"-raw"}},
	}
	for _, tc := range cases {
		text := suite.Raw(t, m, tc.req, tc.flags...)
		r, err := control.ParseReply([]byte(text))
		require.NoError(t, err, "request %q %v", tc.req, tc.flags)
		require.NotEmpty(t, r.Error, "request %q %v: reply %s must be an error", tc.req, tc.flags, text)
		if !strings.HasPrefix(tc.req, "CHALLENGE") {
			require.Equal(t, control.Reply{Error: r.Error}, *r, "request %q %v: only ERROR", tc.req, tc.flags)
		}
	}
	require.Equal(t, before, suite.Report(t, m), "malformed requests changed Layer 4.5's state")
	require.Equal(t, 100, suite.ModParamInt(t, m, "tag", "priority"))
	require.Equal(t, 1, suite.ModParamInt(t, m, "tag", "activate"))
	// A raw request without the trailing NUL is still a request.
	_, err := control.ParseReport([]byte(suite.Raw(t, m, "CUST_REPORT", "-raw")))
	require.NoError(t, err)
}

// Without CAP_NET_ADMIN every request is refused with an error and
// changes nothing.
func r16Unprivileged(t *testing.T, p *suite.Pair) {
	m := p.Client
	p.Load(t, m, "tag", suite.Params{"dest_port": 9, "priority": 100})
	before := suite.Report(t, m)
	for _, req := range []string{"CUST_REPORT", "DEPRECATE 101 END", "TOGGLE 101 0 END", "PRIORITY 101 1 END",
		control.ChallengeRequest(challengeID, []byte{1}, []byte{2})} {
		r := suite.Reply(t, m, req, "-nobody")
		require.Equal(t, control.Reply{Error: r.Error}, *r, "%q as nobody", req)
		require.NotEmpty(t, r.Error, "%q as nobody", req)
	}
	require.Equal(t, before, suite.Report(t, m))
	require.Equal(t, 100, suite.ModParamInt(t, m, "tag", "priority"))
	require.Equal(t, 1, suite.ModParamInt(t, m, "tag", "activate"))
}

// Sixteen installed modules, five of them deprecated, plus a revoked
// history this test makes itself (each module loaded and unloaded twice
// first): a report well beyond 1 KiB whatever ran before (contract
// section 4: replies were cut at 1 KiB), parsed strictly and complete.
func r16LargeReply(t *testing.T, p *suite.Pair) {
	m := p.Client
	mods := []struct {
		name string
		id   int
	}{{"tag", 101}, {"drop", 102}, {"error", 103}, {"nocust", 104}, {"skip_after", 105}, {"try_next", 106},
		{"inactive", 107}, {"tag2", 108}, {"big_reply", 120}, {"segments", 121}, {"challenge", 122},
		{"chain_a", 111}, {"chain_b", 112}, {"chain_c", 113}, {"chain_d", 114}, {"chain_e", 115}}
	// dest_port 9 matches nothing this suite sends.
	for range 2 {
		for _, mod := range mods {
			m.MustLoadModule(t, p.Mods, mod.name, suite.Params{"dest_port": 9}.String())
			m.MustUnloadModule(t, mod.name)
		}
	}
	for _, mod := range mods {
		p.Load(t, m, mod.name, suite.Params{"dest_port": 9})
	}
	deprecated := map[int]bool{}
	for _, mod := range mods[:5] {
		require.Equal(t, 1, suite.Result(t, m, mod.id, fmt.Sprintf("DEPRECATE %d END", mod.id)))
		deprecated[mod.id] = true
	}
	text := suite.Raw(t, m, "CUST_REPORT")
	require.Greater(t, len(text), 1024+256, "the report should be well beyond 1 KiB")
	require.Regexp(t, reportShape, text)
	r, err := control.ParseReport([]byte(text))
	require.NoError(t, err)
	require.Len(t, r.Installed, len(mods)-len(deprecated), "%s", text)
	require.Len(t, r.Deprecated, len(deprecated))
	for _, mod := range mods {
		_, dep, ok := r.Find(mod.id)
		require.True(t, ok, "module %d missing from a %d-byte report", mod.id, len(text))
		require.Equal(t, deprecated[mod.id], dep, "module %d", mod.id)
	}
	require.GreaterOrEqual(t, len(r.Revoked), 2*len(mods), "the history this test made")
	t.Logf("CUST_REPORT: %d bytes, %d installed, %d deprecated, %d revoked", len(text), len(r.Installed), len(r.Deprecated), len(r.Revoked))
}
