package control

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseReport(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    *Report
		wantErr string
	}{
		{
			name: "empty",
			in:   `{"Installed":[],"Deprecated":[],"Revoked":[]}`,
			want: &Report{Installed: []Module{}, Deprecated: []Module{}, Revoked: []Revoked{}},
		},
		{
			name: "all lists",
			in:   `{"Installed":[{"ID":7,"Activated":1,"Count":2,"ts":1700000000}],"Deprecated":[{"ID":9,"Activated":0,"Count":1,"ts":5}],"Revoked":[{"ID":3,"ts":6}]}`,
			want: &Report{
				Installed:  []Module{{ID: 7, Activated: 1, Count: 2, TS: 1700000000}},
				Deprecated: []Module{{ID: 9, Activated: 0, Count: 1, TS: 5}},
				Revoked:    []Revoked{{ID: 3, TS: 6}},
			},
		},
		{name: "truncated", in: `{"Installed":[{"ID":7,"Activ`, wantErr: "not the expected JSON"},
		{name: "missing list", in: `{"Installed":[]}`, wantErr: "lacks one of"},
		{name: "unknown field", in: `{"Installed":[],"Deprecated":[],"Revoked":[],"X":1}`, wantErr: "unknown field"},
		{name: "trailing garbage", in: `{"Installed":[],"Deprecated":[],"Revoked":[]}{}`, wantErr: "trailing"},
		{name: "error reply", in: `{"ERROR":"unknown command"}`, wantErr: "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseReport([]byte(tt.in))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestRequestsAreSpelledAsTheContractSays(t *testing.T) {
	require.Equal(t, "CUST_REPORT", ReportRequest())
	require.Equal(t, "DEPRECATE 12 END", DeprecateRequest(12))
	require.Equal(t, "TOGGLE 5 0 END", ToggleRequest(5, false))
	require.Equal(t, "TOGGLE 5 1 END", ToggleRequest(5, true))
	require.Equal(t, "PRIORITY 5 300 END", PriorityRequest(5, 300))
	require.Equal(t, "CHALLENGE 4 0a0b ff END", ChallengeRequest(4, []byte{10, 11}, []byte{255}))
}

func TestClientResultChecksTheReply(t *testing.T) {
	reply := ""
	c := Client{Send: func(_ context.Context, req string, _ ...string) ([]byte, error) { return []byte(reply), nil }}
	ctx := context.Background()

	reply = `{"ID":5,"Result":1}`
	ok, err := c.Toggle(ctx, 5, true)
	require.NoError(t, err)
	require.True(t, ok)

	reply = `{"ID":5,"Result":0}`
	ok, err = c.Deprecate(ctx, 5)
	require.NoError(t, err)
	require.False(t, ok)

	reply = `{"ID":6,"Result":1}`
	_, err = c.SetPriority(ctx, 5, 1)
	require.ErrorContains(t, err, "another module")

	reply = `{"ERROR":"malformed"}`
	_, err = c.Toggle(ctx, 5, true)
	require.ErrorContains(t, err, "Layer 4.5 says: malformed")

	reply = `{"ID":4,"IV":"00","Response":"abcd"}`
	r, err := c.Challenge(ctx, 4, []byte{0}, []byte{1})
	require.NoError(t, err)
	require.Equal(t, "abcd", r.Response)
}
