package suites

// R16: the control interface (netlink protocol 25), driven by l45ctl in the
// client guest and parsed strictly on the host (harness/control): every
// reply must be exactly the JSON object the contract describes. What this
// implementation decided where the contract is silent (I9, I20, I21, I23,
// I24) is asserted in bodies of its own. These bodies run on
// TestRegistrationBuffersControl's pair.

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/vm"
	"layer45/suites/suite"
	"layer45/vmimages/control"
)

const challengeID = 122

func ctxBG() context.Context { return context.Background() }

var reportShape = regexp.MustCompile(`^\{"Installed":\[(\{"ID":\d+,"Activated":[01],"Count":\d+,"ts":\d+\},?)*\],` +
	`"Deprecated":\[(\{"ID":\d+,"Activated":[01],"Count":\d+,"ts":\d+\},?)*\],` +
	`"Revoked":\[(\{"ID":\d+,"ts":\d+\},?)*\]\}$`)

// loadForUnload loads module into m for a test that unloads it itself
// with the function returned; if the test ends first, its cleanup does.
func loadForUnload(t *testing.T, p *suite.Pair, m *vm.Machine, module string) (unload func()) {
	t.Helper()
	m.MustLoadModule(t, p.Mods, module, "")
	unloaded := false
	t.Cleanup(func() {
		if !unloaded && !m.Exited() {
			m.UnloadModule(context.Background(), module)
		}
	})
	return func() {
		m.MustUnloadModule(t, module)
		unloaded = true
	}
}

// The report's exact shape, field order included: a registered module is
// listed under Installed with its activation and socket count, a
// deprecated one under Deprecated, and an unloaded one joins Revoked.
func r16ReportFormat(t *testing.T, p *suite.Pair) {
	m := p.Client
	unload := loadForUnload(t, p, m, "challenge")
	p.Load(t, m, "tag", suite.Params{"dest_port": 9})
	require.Equal(t, 1, suite.Result(t, m, tagID, "DEPRECATE 101 END"))
	text := suite.Raw(t, m, "CUST_REPORT")
	require.Regexp(t, reportShape, text)
	r, err := control.ParseReport([]byte(text))
	require.NoError(t, err)
	ch, dep, ok := r.Find(challengeID)
	require.True(t, ok, "%s", text)
	require.False(t, dep)
	require.Equal(t, control.Module{ID: challengeID, Activated: 1, Count: 0, TS: ch.TS}, ch)
	_, dep, ok = r.Find(tagID)
	require.True(t, ok && dep, "the deprecated module is listed under Deprecated: %s", text)

	revoked := suite.Revoked(r, challengeID)
	unload()
	r = suite.Report(t, m)
	require.Equal(t, revoked+1, suite.Revoked(r, challengeID), "the unloaded module joins the revoked history")
	_, _, ok = r.Find(challengeID)
	require.False(t, ok)
}

// I23: ts is the registration time under Installed, the deprecation time
// under Deprecated and the unregistration time under Revoked, in seconds
// since the epoch (the guest's clock comes from the host's, so each is
// close to the host's now).
func i23Timestamps(t *testing.T, p *suite.Pair) {
	m := p.Client
	start := time.Now().Add(-time.Hour).Unix()
	unload := loadForUnload(t, p, m, "challenge")
	p.Load(t, m, "tag", suite.Params{"dest_port": 9})
	require.Equal(t, 1, suite.Result(t, m, tagID, "DEPRECATE 101 END"))
	r := suite.Report(t, m)
	end := time.Now().Add(time.Hour).Unix()
	ch, _, _ := r.Find(challengeID)
	require.True(t, ch.TS >= start && ch.TS <= end, "registration ts %d is not about now", ch.TS)
	tg, dep, ok := r.Find(tagID)
	require.True(t, ok && dep)
	require.True(t, tg.TS >= ch.TS && tg.TS <= end, "deprecation ts %d", tg.TS)

	unload()
	var newest int64
	for _, e := range suite.Report(t, m).Revoked {
		if e.ID == challengeID && e.TS > newest {
			newest = e.TS
		}
	}
	require.True(t, newest >= ch.TS && newest <= end, "revocation ts %d", newest)
}

// DEPRECATE, TOGGLE and PRIORITY answer {"ID":n,"Result":1} for a known
// module and change it (the module's own variables, the report), and
// {"ID":n,"Result":0} for an unknown one, or DEPRECATE for a module
// already deprecated.
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

	for _, req := range []string{"DEPRECATE 4242 END", "TOGGLE 4242 1 END", "PRIORITY 4242 3 END"} {
		require.Equal(t, 0, suite.Result(t, m, 4242, req), "%s: unknown id", req)
	}
}

// I9: TOGGLE, PRIORITY and CHALLENGE still work on a deprecated module.
func i9Deprecated(t *testing.T, p *suite.Pair) {
	m := p.Client
	p.Load(t, m, "challenge", nil)
	require.Equal(t, 1, suite.Result(t, m, challengeID, "DEPRECATE 122 END"))
	require.Equal(t, 1, suite.Result(t, m, challengeID, "TOGGLE 122 0 END"))
	e, dep := suite.Entry(t, m, challengeID)
	require.True(t, dep)
	require.Equal(t, 0, e.Activated)
	require.Equal(t, 1, suite.Result(t, m, challengeID, "PRIORITY 122 7 END"))
	require.Equal(t, 7, suite.ModParamInt(t, m, "challenge", "priority"))
	calls := suite.ModParamInt(t, m, "challenge", "calls")
	r := suite.Reply(t, m, control.ChallengeRequest(challengeID, []byte{1}, []byte{2}))
	require.Empty(t, r.Error, "%+v", r)
	require.Equal(t, calls+1, suite.ModParamInt(t, m, "challenge", "calls"))
}

// CHALLENGE <id> <iv> <challenge> END calls the module's
// challenge_function (its calls counter says so) and answers
// {"ID":n,"IV":...,"Response":...}. What the function is given and how
// its answer is carried is I24's.
func r16Challenge(t *testing.T, p *suite.Pair) {
	m := p.Client
	p.Load(t, m, "challenge", nil)
	calls := suite.ModParamInt(t, m, "challenge", "calls")
	r := suite.Reply(t, m, control.ChallengeRequest(challengeID, []byte{0x01, 0x80, 0xfe}, []byte("layer 4.5 challenge")))
	require.Empty(t, r.Error, "%+v", r)
	require.NotNil(t, r.ID)
	require.Equal(t, challengeID, *r.ID)
	require.Nil(t, r.Result)
	require.NotEmpty(t, r.IV)
	require.Equal(t, calls+1, suite.ModParamInt(t, m, "challenge", "calls"), "the challenge function was called once")
}

// D7: CHALLENGE with an unknown id dereferenced NULL. It gets
// {"ID":n,"ERROR":...}, and Layer 4.5 goes on answering.
func r16ChallengeUnknown(t *testing.T, p *suite.Pair) {
	m := p.Client
	r := suite.Reply(t, m, control.ChallengeRequest(4242, []byte{1}, []byte{2}))
	require.NotNil(t, r.ID, "%+v", r)
	require.Equal(t, 4242, *r.ID)
	require.NotEmpty(t, r.Error, "%+v", r)
	require.Empty(t, r.Response)
	suite.Report(t, m)
}

// I24: the challenge function gets the request's iv and challenge as the
// hex strings they were sent as (the challenge module decodes them
// itself) and writes a string that becomes Response: here
// hex(challenge[i] ^ iv[i % len(iv)] ^ key); IV repeats the request's.
// iv and challenge must be non-empty, even-length hex, and the errors
// have these words.
func i24Challenge(t *testing.T, p *suite.Pair) {
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
	require.Equal(t, hex.EncodeToString(iv), strings.ToLower(r.IV))
	require.Equal(t, hex.EncodeToString(want), strings.ToLower(r.Response))

	for _, tc := range []struct {
		id  int
		err string
	}{{4242, "unknown id"}, {tagID, "module has no challenge function"}} {
		r := suite.Reply(t, m, control.ChallengeRequest(tc.id, iv, ch))
		require.Equal(t, control.Reply{ID: &tc.id, Error: tc.err}, *r)
	}
	for _, ivHex := range []string{"0g", "012"} {
		r = suite.Reply(t, m, fmt.Sprintf("CHALLENGE %d %s %s END", challengeID, ivHex, hex.EncodeToString(ch)))
		require.NotEmpty(t, r.Error, "iv %q: %+v", ivHex, r)
		require.Empty(t, r.Response)
	}
}

// requireRefused sends req (with l45ctl's flags) and fails t unless the
// reply is exactly {"ERROR":"..."}; CHALLENGE may name its id too.
func requireRefused(t *testing.T, m *vm.Machine, req string, flags ...string) {
	t.Helper()
	text := suite.Raw(t, m, req, flags...)
	r, err := control.ParseReply([]byte(text))
	require.NoError(t, err, "request %q %v", req, flags)
	require.NotEmpty(t, r.Error, "request %q %v: reply %s must be an error", req, flags, text)
	if !strings.HasPrefix(req, "CHALLENGE") {
		require.Equal(t, control.Reply{Error: r.Error}, *r, "request %q %v: only ERROR", req, flags)
	}
}

// requireUnchanged fails t unless m's report and the tag module's
// priority (100) and activation are what they were.
func requireUnchanged(t *testing.T, m *vm.Machine, before *control.Report) {
	t.Helper()
	require.Equal(t, before, suite.Report(t, m), "Layer 4.5's state changed")
	require.Equal(t, 100, suite.ModParamInt(t, m, "tag", "priority"))
	require.Equal(t, 1, suite.ModParamInt(t, m, "tag", "activate"))
}

// Unknown, malformed (not the contract's grammar) and unterminated
// requests get {"ERROR":"..."} and change nothing: the report and the
// module's variables are the same afterwards. D9: unknown commands were
// answered with uninitialised memory; the strict parse catches anything
// but the one JSON object.
func r16Malformed(t *testing.T, p *suite.Pair) {
	m := p.Client
	p.Load(t, m, "tag", suite.Params{"dest_port": 9, "priority": 100})
	before := suite.Report(t, m)
	for _, req := range []string{"", "HELLO", "HELLO 101 END", "CUST_REPORT 101 END",
		"DEPRECATE", "DEPRECATE 101", "DEPRECATE END", "DEPRECATE abc END", "DEPRECATE 101 101 END",
		"TOGGLE 101 2 END", "TOGGLE 101 END", "TOGGLE 101 0",
		"PRIORITY 101 END", "PRIORITY 101 x END", "CHALLENGE 101 END"} {
		requireRefused(t, m, req)
	}
	// Sent as they are: unterminated (no END, no NUL), cut short.
	for _, req := range []string{"DEPRECATE 101", "TOGGLE 101 0 E"} {
		requireRefused(t, m, req, "-raw")
	}
	requireUnchanged(t, m, before)
}

// I21: the request syntax where the contract leaves it open. Refused:
// lower case, numbers that are not decimal u16, more than 256 bytes (a
// valid command padded with leading zeros: the number is still 101),
// bytes that are not printable ASCII. Accepted: "CUST_REPORT END", a
// request without a trailing NUL, trailing blanks.
func i21Syntax(t *testing.T, p *suite.Pair) {
	m := p.Client
	p.Load(t, m, "tag", suite.Params{"dest_port": 9, "priority": 100})
	before := suite.Report(t, m)
	for _, req := range []string{"cust_report", "DEPRECATE -1 END", "DEPRECATE 70000 END", "PRIORITY 101 65536 END",
		"DEPRECATE " + strings.Repeat("0", 300) + "101 END"} {
		requireRefused(t, m, req)
	}
	for _, req := range []string{"TOGGLE\x01101 0 END", "PRIORITY 101 5 END\x7f"} {
		requireRefused(t, m, req, "-raw")
	}
	requireUnchanged(t, m, before)

	again, err := control.ParseReport([]byte(suite.Raw(t, m, "CUST_REPORT END")))
	require.NoError(t, err)
	require.Equal(t, before, again)
	_, err = control.ParseReport([]byte(suite.Raw(t, m, "CUST_REPORT", "-raw")))
	require.NoError(t, err)
	require.Equal(t, 1, suite.Result(t, m, tagID, "PRIORITY 101 100 END \t"))
}

// unprivilegedRequests are one request of each kind.
var unprivilegedRequests = []string{"CUST_REPORT", "DEPRECATE 101 END", "TOGGLE 101 0 END", "PRIORITY 101 1 END",
	control.ChallengeRequest(challengeID, []byte{1}, []byte{2})}

// D17: the control interface served processes without CAP_NET_ADMIN.
// Sent as nobody, no request is carried out: no reply is a report, has a
// Result or a Response, and the report, the tag module's variables and
// the challenge module's calls are unchanged. How the refusal looks is
// I20's.
func r16Unprivileged(t *testing.T, p *suite.Pair) {
	m := p.Client
	p.Load(t, m, "tag", suite.Params{"dest_port": 9, "priority": 100})
	p.Load(t, m, "challenge", nil)
	before := suite.Report(t, m)
	calls := suite.ModParamInt(t, m, "challenge", "calls")
	for _, req := range unprivilegedRequests {
		b, err := m.Control().Send(ctxBG(), req, "-nobody")
		if err != nil {
			t.Logf("%q as nobody: %v", req, err) // no reply is a refusal too
			continue
		}
		_, err = control.ParseReport(b)
		require.Error(t, err, "%q as nobody got a report", req)
		if r, err := control.ParseReply(b); err == nil {
			require.True(t, r.Result == nil && r.Response == "", "%q as nobody was carried out: %s", req, b)
		}
	}
	requireUnchanged(t, m, before)
	require.Equal(t, calls, suite.ModParamInt(t, m, "challenge", "calls"), "the challenge function ran for nobody")
}

// I20: an unprivileged request is answered {"ERROR":"CAP_NET_ADMIN required"}.
func i20Unprivileged(t *testing.T, p *suite.Pair) {
	for _, req := range unprivilegedRequests {
		r := suite.Reply(t, p.Client, req, "-nobody")
		require.Equal(t, control.Reply{Error: "CAP_NET_ADMIN required"}, *r, "%q as nobody", req)
	}
}

// Sixteen installed modules, five of them deprecated, plus a revoked
// history this test makes itself (each module loaded and unloaded twice
// first): a report well beyond 1 KiB whatever ran before (D10: replies
// were cut at 1 KiB), parsed strictly and complete.
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
