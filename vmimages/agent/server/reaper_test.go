package server

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/proto"
)

// TestOrphansReaped makes the test process a child subreaper (what PID 1
// is by nature) and checks that a grandchild orphaned by its parent is
// reaped and does not stay a zombie, while the program's own status still
// reaches the server.
func TestOrphansReaped(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("cannot become a subreaper: %v", err)
	}
	s := New(Config{})
	p, err := s.spawn(proto.RunArgs{Argv: []string{"/bin/sh", "-c", "sleep 0.2 >/dev/null 2>&1 & echo $!; exit 7"}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := waitProc(p, 10*time.Second)
	if r == nil || r.ExitCode != 7 {
		t.Fatalf("result %+v", r)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(r.Stdout)))
	if err != nil {
		t.Fatalf("stdout %q", r.Stdout)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat("/proc/" + strconv.Itoa(orphan))
		if os.IsNotExist(err) {
			break // reaped
		}
		if time.Now().After(deadline) {
			status, _ := os.ReadFile("/proc/" + strconv.Itoa(orphan) + "/status")
			t.Fatalf("orphan %d not reaped:\n%s", orphan, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.reaper.mu.Lock()
	n := s.reaper.orphans
	s.reaper.mu.Unlock()
	if n == 0 {
		t.Error("the reaper counted no orphan")
	}
}
