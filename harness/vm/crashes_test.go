package vm

import "testing"

func TestFatalReportsEndPendingCalls(t *testing.T) {
	for title, want := range map[string]bool{
		"BUG: kernel NULL pointer dereference in crash_test_init": true,
		"BUG: unable to handle page fault for address in foo":     true,
		"general protection fault in bar":                         true,
		"kernel BUG at net/core/skbuff.c:123!":                    true,
		"Oops: divide error in baz":                               true,
		"divide error in baz":                                     true,
		"Kernel panic - not syncing: Fatal exception":             true,
		"Internal error: Oops: 96000005 in qux":                   true,
		"WARNING in crash_test_init":                              false,
		"BUG: sleeping function called from invalid context":      false,
		"possible deadlock in l45_send":                           false,
		"KASAN: use-after-free Read in l45_recv":                  false,
		"memory leak in l45_register":                             false,
	} {
		if got := isFatal(title); got != want {
			t.Errorf("isFatal(%q) = %v, want %v", title, got, want)
		}
	}
}
