package traffic

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/vmimages/guest"
)

func TestRateFigures(t *testing.T) {
	r := Rate{Ops: 300, Bytes: 6_000_000, Seconds: 1.5}
	require.InDelta(t, 200, r.PerSecond(), 1e-9)
	require.InDelta(t, 4, r.MBPerSecond(), 1e-9)
	empty := Rate{Ops: 3, Bytes: 10}
	require.Zero(t, empty.PerSecond(), "no time measured is no rate, not infinity")
	require.Zero(t, empty.MBPerSecond())

	got, err := ParseRate([]byte(`{"ops":7,"bytes":448,"lost":1,"seconds":0.5}` + "\n"))
	require.NoError(t, err)
	require.Equal(t, Rate{Ops: 7, Bytes: 448, Lost: 1, Seconds: 0.5}, *got)
	_, err = ParseRate([]byte("l45net: connect: refused"))
	require.Error(t, err)
}

func TestTimedArgs(t *testing.T) {
	require.Equal(t, []string{guest.L45net, "tcp-bulk", "-to", "10.0.0.20:5001", "-duration", "2s"},
		Bulk{To: "10.0.0.20:5001", Duration: 2 * time.Second}.Args())
	require.Equal(t, []string{guest.L45net, "udp-rr", "-to", "h:1", "-duration", "1.5s", "-size", "100", "-timeout", "500ms"},
		RR{To: "h:1", Duration: 1500 * time.Millisecond, Size: 100, Timeout: 500 * time.Millisecond}.Args())
	require.Equal(t, []string{guest.L45net, "tcp-sink", "-listen", "h:2"}, Sink{Listen: "h:2"}.Args())
	require.Equal(t, []string{guest.L45net, "udp-serve", "-listen", "h:3", "-quiet"}, Server{Proto: "udp", Listen: "h:3", Quiet: true}.Args())
}

func runRate(t *testing.T, bin string, args []string) *Rate {
	t.Helper()
	r, err := ParseRate(runTool(t, bin, args))
	require.NoError(t, err)
	return r
}
