package proto

import "time"

// Verbs of a program on a terminal (an interactive shell). pty-start
// answers a StartResult whose handle is one of the process table's: wait
// and signal take it too. The host then alternates pty-write and pty-read:
// the protocol stays one request at a time, so pty-read waits only
// briefly for output (PtyReadArgs.Wait) and the next keystrokes are sent
// after it.
const (
	VerbPtyStart  = "pty-start"
	VerbPtyWrite  = "pty-write"
	VerbPtyRead   = "pty-read"
	VerbPtyResize = "pty-resize"
)

// MaxPtyRead is the most output one pty-read returns.
const MaxPtyRead = 64 << 10

// PtyStartArgs are the arguments of pty-start: the program gets a new
// pseudo-terminal as its stdin, stdout, stderr and controlling terminal,
// in a session of its own.
type PtyStartArgs struct {
	Argv []string `json:"argv"`
	// Env entries are added to the agent's default environment, as for
	// run.
	Env []string `json:"env,omitempty"`
	Dir string   `json:"dir,omitempty"`
	// Term is TERM; empty keeps the default environment's.
	Term string `json:"term,omitempty"`
	// Rows and Cols are the terminal's initial window size; zero leaves
	// the kernel's (0x0).
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// PtyWriteArgs are the arguments of pty-write: Data is typed on the
// terminal (0x03 is Ctrl-C, which the terminal turns into SIGINT).
type PtyWriteArgs struct {
	Handle int    `json:"handle"`
	Data   []byte `json:"data"`
}

// PtyWriteResult says how many bytes the terminal took. A program that
// does not read fills the terminal's input buffer; the agent then waits
// only briefly and the host sends the rest later. Once the program has
// ended, input is dropped (taken whole).
type PtyWriteResult struct {
	N int `json:"n"`
}

// PtyReadArgs are the arguments of pty-read: return the output available,
// at most Max bytes (0 or more than MaxPtyRead: MaxPtyRead), waiting up to
// Wait for some when there is none.
type PtyReadArgs struct {
	Handle int           `json:"handle"`
	Wait   time.Duration `json:"wait,omitempty"`
	Max    int           `json:"max,omitempty"`
}

// PtyReadResult is the result of pty-read. Exit is set, with Data empty,
// once the program has ended and its output has all been read; the handle
// is then forgotten.
type PtyReadResult struct {
	Data []byte     `json:"data,omitempty"`
	Exit *RunResult `json:"exit,omitempty"`
}

// PtyResizeArgs are the arguments of pty-resize.
type PtyResizeArgs struct {
	Handle int    `json:"handle"`
	Rows   uint16 `json:"rows"`
	Cols   uint16 `json:"cols"`
}
