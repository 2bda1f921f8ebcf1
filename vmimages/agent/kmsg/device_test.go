package kmsg

import (
	"os"
	"testing"
)

// TestDevice reads the host's own /dev/kmsg when it may.
func TestDevice(t *testing.T) {
	d, err := Open("/dev/kmsg", false)
	if err != nil {
		// Reading the kernel log needs privileges a developer's
		// account may lack; CI runs as root and must run this.
		if os.Getenv("CI") == "" {
			t.Skipf("no readable /dev/kmsg (run as root): %v", err)
		}
		t.Fatalf("no readable /dev/kmsg: %v", err)
	}
	recs, next, _, err := Collect(d, 0, 0)
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 {
		t.Fatal("empty kernel log")
	}
	if next != recs[len(recs)-1].Seq+1 {
		t.Errorf("cursor %d after record %d", next, recs[len(recs)-1].Seq)
	}
	// From the end: nothing is old.
	d, err = Open("/dev/kmsg", true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	later, _, _, err := Collect(d, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range later {
		if r.Seq < next {
			t.Errorf("record %d read from the end, but the end was %d", r.Seq, next)
		}
	}
}
