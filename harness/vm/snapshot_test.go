package vm_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"layer45/harness/vm"
)

// snapshotAge is how old the snapshot is made before guests are restored
// from it, and clockSlack how far behind the host a restored guest's clock
// may be: a setup request can take seconds to reach an agent on a busy
// TCG host, but never this long.
const (
	snapshotAge = 30 * time.Second
	clockSlack  = 10 * time.Second
)

// TestRestoredGuestsAreTheGuestsAskedFor: two guests resumed from one
// snapshot have their own names, MACs and addresses, the host's clock and
// their own randomness, and the link between them works.
func TestRestoredGuestsAreTheGuestsAskedFor(t *testing.T) {
	lan := vm.NewLink(t, "lan")
	// Without setup a restored guest's clock is the snapshot's: make sure
	// the snapshot is old enough for that to show.
	warm := vm.Boot(t, vm.WithName("warm"), vm.WithNIC(lan, "10.0.0.3/24"), vm.WithRestore())
	st, err := os.Stat(warm.Snapshot())
	require.NoError(t, err)
	warm.Close()
	time.Sleep(time.Until(st.ModTime().Add(snapshotAge)))

	a := vm.Boot(t, vm.WithName("alpha"), vm.WithNIC(lan, "10.0.0.1/24"), vm.WithRestore())
	b := vm.Boot(t, vm.WithName("beta"), vm.WithNIC(lan, "10.0.0.2/24"), vm.WithRestore())
	for _, g := range []*vm.Machine{a, b} {
		require.True(t, g.Restored(), "%s was booted, not restored", g.Name)
		require.Equal(t, g.Name, strings.TrimSpace(g.MustRun(t, "/bin/hostname")))
		require.Equal(t, g.Name, g.Hello().Hostname)

		// The clock: setup sets the host's time as sent, late by the
		// time the request took to reach the guest.
		before := time.Now()
		out := g.MustRun(t, "/bin/date", "+%s")
		after := time.Now()
		secs, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		require.NoError(t, err)
		require.True(t, secs >= before.Add(-clockSlack).Unix() && secs <= after.Unix()+1,
			"%s's clock says %d, the host's was %d..%d", g.Name, secs, before.Unix(), after.Unix())
	}
	macA := strings.TrimSpace(a.MustRun(t, "/bin/cat", "/sys/class/net/eth0/address"))
	macB := strings.TrimSpace(b.MustRun(t, "/bin/cat", "/sys/class/net/eth0/address"))
	require.NotEqual(t, macA, macB, "two restored guests share a MAC: the link cannot tell them apart")

	// Both resumed the same random generator state; only the reseed at
	// setup makes their output differ.
	randA := a.MustRun(t, "/bin/sh", "-c", "head -c 32 /dev/urandom | od -An -tx1")
	randB := b.MustRun(t, "/bin/sh", "-c", "head -c 32 /dev/urandom | od -An -tx1")
	require.NotEqual(t, randA, randB, "two restored guests produce the same random bytes")

	// The link: each reaches the other across the hub.
	a.MustRun(t, "/bin/ping", "-c", "1", "-W", "5", "10.0.0.2")
	b.MustRun(t, "/bin/ping", "-c", "1", "-W", "5", "10.0.0.1")
}
