package vm

import (
	"errors"
	"fmt"
	"strings"
)

// ErrStopped is the cause of a GuestError for a call made after the guest
// powered off or its QEMU ended.
var ErrStopped = errors.New("the guest is not running")

// GuestError is a failed operation on a guest: a boot that never reached the
// agent, a guest that stopped answering, or an error the agent reported.
// It unwraps to the cause, so errors.As finds *agent.AgentError and
// *agent.ModuleError, and errors.Is finds fs.ErrNotExist, a syscall.Errno or
// context.DeadlineExceeded. Failures of the harness itself (no QEMU, an
// unwritable evidence folder) are *infra.Error instead.
type GuestError struct {
	Guest string
	Op    string // "boot", "run /bin/true", "load tag", ...
	Err   error
	// Crashes are the titles of kernel reports seen on the console so far.
	Crashes []string
	// Console is the console's last lines when the guest stopped answering
	// or never came up; empty for an ordinary refusal.
	Console []string
	// Evidence is the guest's evidence folder.
	Evidence string
}

func (e *GuestError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "guest %s: %s: %v", e.Guest, e.Op, e.Err)
	for _, c := range e.Crashes {
		fmt.Fprintf(&b, "\nkernel crash: %s", c)
	}
	if len(e.Console) > 0 {
		fmt.Fprintf(&b, "\nlast console lines:\n  %s", strings.Join(e.Console, "\n  "))
	}
	if e.Evidence != "" && (len(e.Console) > 0 || len(e.Crashes) > 0) {
		fmt.Fprintf(&b, "\nevidence: %s", e.Evidence)
	}
	return b.String()
}

func (e *GuestError) Unwrap() error { return e.Err }
