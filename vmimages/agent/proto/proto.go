// Package proto defines the wire protocol between the Layer 4.5 guest agent
// (PID 1 of a test guest, package layer45/vmimages/agent) and its host-side
// client (package layer45/harness/agent).
//
// The protocol is synchronous request/response over a byte stream (a
// virtio-serial port in a guest, net.Pipe in tests). Every frame is one JSON
// object on one line, terminated by '\n'. []byte fields travel as base64, the
// way encoding/json encodes them.
//
// The host sends Request frames; the agent answers each with exactly one
// Response frame carrying the same ID. The agent also sends one unsolicited
// Response with ID 0 and Verb "hello" as soon as it has opened its port, and
// answers a "hello" request with the same data. A frame that the agent cannot
// read (not JSON, too large) is answered with a Response of ID 0 whose Error
// says why; the agent then goes on reading the next line.
package proto

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Version is the protocol version carried in the hello frame.
const Version = 1

// DefaultPort is the name of the virtio-serial port the agent listens on.
const DefaultPort = "org.layer45.agent"

// Limits shared by both ends. Either side may be configured with smaller ones.
const (
	// MaxFile is the largest file content put or get moves in one frame.
	MaxFile = 32 << 20
	// MaxFrame is the largest frame either side reads; larger frames are
	// discarded up to the next newline and reported as ErrFrameTooLarge.
	// It leaves room for MaxFile bytes in base64 plus the JSON around them.
	MaxFrame = 48 << 20
	// MaxOutput caps each of stdout and stderr captured from a program.
	MaxOutput = 4 << 20
)

// Verbs.
const (
	VerbHello    = "hello"
	VerbPing     = "ping"
	VerbRun      = "run"
	VerbStart    = "start"
	VerbWait     = "wait"
	VerbSignal   = "signal"
	VerbPut      = "put"
	VerbGet      = "get"
	VerbInsmod   = "insmod"
	VerbRmmod    = "rmmod"
	VerbKlog     = "klog"
	VerbSync     = "sync"
	VerbPowerOff = "poweroff"
	VerbSetup    = "setup"
)

// Error codes carried in Error.Code.
const (
	CodeBadFrame      = "bad-frame"       // the line was not a valid request
	CodeFrameTooLarge = "frame-too-large" // the line exceeded the agent's frame limit
	CodeUnknownVerb   = "unknown-verb"
	CodeBadArgs       = "bad-args"      // arguments missing or invalid
	CodeExec          = "exec"          // the program could not be started
	CodeStillRunning  = "still-running" // wait/signal: the process has not exited in time
	CodeNoProcess     = "no-process"    // wait/signal: unknown handle
	CodeErrno         = "errno"         // a system call failed; Errno says which
	CodeInternal      = "internal"      // the agent recovered from a bug
)

// Request is a frame from the host.
type Request struct {
	ID   uint64 `json:"id"`
	Verb string `json:"verb"`
	// Args holds the verb's argument struct (RunArgs, PutArgs, ...), or is
	// absent for verbs without arguments.
	Args RawJSON `json:"args,omitempty"`
}

// Response is a frame from the agent.
type Response struct {
	ID   uint64 `json:"id"`
	Verb string `json:"verb,omitempty"`
	// Error is set when the request failed; Result is then absent.
	Error *Error `json:"error,omitempty"`
	// Result holds the verb's result struct, if it has one.
	Result RawJSON `json:"result,omitempty"`
}

// RawJSON is a raw encoded JSON value.
type RawJSON = json.RawMessage

// Error is an agent-side failure.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Errno is the kernel's error number when a system call failed, with its
	// symbolic name ("EINVAL").
	Errno     int    `json:"errno,omitempty"`
	ErrnoName string `json:"errno_name,omitempty"`
	// Log holds kernel log lines printed during insmod/rmmod.
	Log []string `json:"log,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Hello is what the agent says when it starts serving.
type Hello struct {
	Protocol     int    `json:"protocol"`
	AgentVersion string `json:"agent_version"`
	// Release, KernelVersion and Machine are uname's -r, -v and -m.
	Release       string `json:"release"`
	KernelVersion string `json:"kernel_version,omitempty"`
	Machine       string `json:"machine,omitempty"`
	Hostname      string `json:"hostname,omitempty"`
	Cmdline       string `json:"cmdline,omitempty"`
	// Uptime is the guest's uptime when the hello was made.
	Uptime time.Duration `json:"uptime"`
	// Boot lists the boot steps the agent took, in order.
	Boot []BootStep `json:"boot,omitempty"`
}

// BootStep is the outcome of one step the agent took while booting.
type BootStep struct {
	// Step names the kind of step: "mount", "module", "hostname", "net",
	// "disk", "autoload", "cmdline", "port".
	Step string `json:"step"`
	// Target is what the step acted on: a mount point, a module path or
	// name, an interface.
	Target string `json:"target,omitempty"`
	OK     bool   `json:"ok"`
	// Note qualifies a success ("already mounted", "already loaded").
	Note string `json:"note,omitempty"`
	// Error describes a failure; Errno/ErrnoName are set when a system call
	// failed.
	Error     string `json:"error,omitempty"`
	Errno     int    `json:"errno,omitempty"`
	ErrnoName string `json:"errno_name,omitempty"`
}

// String renders the step the way the agent logs it on the console.
func (s BootStep) String() string {
	var b bytes.Buffer
	b.WriteString(s.Step)
	if s.Target != "" {
		b.WriteString(" ")
		b.WriteString(s.Target)
	}
	if s.OK {
		b.WriteString(": ok")
		if s.Note != "" {
			b.WriteString(" (" + s.Note + ")")
		}
		return b.String()
	}
	b.WriteString(": FAILED: ")
	b.WriteString(s.Error)
	if s.ErrnoName != "" {
		fmt.Fprintf(&b, " (%s, errno %d)", s.ErrnoName, s.Errno)
	}
	return b.String()
}

// SetupArgs are the arguments of setup, which makes a guest restored from a
// snapshot into the guest the host wants: the snapshot was taken from a guest
// booted without any identity, so everything in which guests differ is
// applied here. The reply is a Hello whose Boot lists the setup steps after
// the boot steps.
type SetupArgs struct {
	Hostname string      `json:"hostname,omitempty"`
	Nets     []NetConfig `json:"nets,omitempty"`
	// Time is the host's wall clock, in Unix nanoseconds, when it sent the
	// request: the restored guest's clock is the snapshot's.
	Time int64 `json:"time"`
	// Seed is fresh randomness for the kernel's pool, which is then
	// reseeded: every guest restored from one snapshot starts with the same
	// pool state.
	Seed []byte `json:"seed"`
}

// NetConfig is an interface to bring up: its link-layer address first (the
// snapshot's card has the snapshot's), then the address.
type NetConfig struct {
	Iface string `json:"iface"`
	Addr  string `json:"addr"` // "10.0.0.20/24"
	MAC   string `json:"mac,omitempty"`
}

// RunArgs are the arguments of run and start.
type RunArgs struct {
	Argv []string `json:"argv"`
	// Env entries ("KEY=VALUE") are added to the agent's default
	// environment; a later entry overrides an earlier one with the same key.
	Env   []string `json:"env,omitempty"`
	Dir   string   `json:"dir,omitempty"`
	Stdin []byte   `json:"stdin,omitempty"`
	// Timeout kills the whole process group with SIGKILL when it expires;
	// zero means no limit.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// RunResult is the result of run, wait and signal.
type RunResult struct {
	Pid      int `json:"pid"`
	ExitCode int `json:"exit_code"`
	// Signal is the name of the signal that ended the process ("SIGKILL"),
	// empty if it exited. ExitCode is -1 then.
	Signal    string        `json:"signal,omitempty"`
	TimedOut  bool          `json:"timed_out,omitempty"`
	Stdout    []byte        `json:"stdout,omitempty"`
	Stderr    []byte        `json:"stderr,omitempty"`
	Truncated bool          `json:"truncated,omitempty"`
	Duration  time.Duration `json:"duration"`
}

// StartResult is the result of start.
type StartResult struct {
	Handle int `json:"handle"`
	Pid    int `json:"pid"`
}

// WaitArgs are the arguments of wait. A zero Timeout waits without limit.
type WaitArgs struct {
	Handle  int           `json:"handle"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

// SignalArgs are the arguments of signal: Signal ("SIGTERM") is sent to the
// process group, then the agent waits up to Timeout (zero: no limit).
type SignalArgs struct {
	Handle  int           `json:"handle"`
	Signal  string        `json:"signal"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

// PutArgs are the arguments of put. Mode 0 means 0644. Parent directories
// are created (0755) when Mkdir is set.
type PutArgs struct {
	Path  string `json:"path"`
	Mode  uint32 `json:"mode,omitempty"`
	Data  []byte `json:"data,omitempty"`
	Mkdir bool   `json:"mkdir,omitempty"`
}

// GetArgs are the arguments of get.
type GetArgs struct {
	Path string `json:"path"`
}

// GetResult is the result of get. Truncated is set when the file had more
// than the agent's limit; Data then holds the first bytes.
type GetResult struct {
	Data      []byte `json:"data,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// InsmodArgs are the arguments of insmod.
type InsmodArgs struct {
	Path   string `json:"path"`
	Params string `json:"params,omitempty"`
}

// RmmodArgs are the arguments of rmmod; Flags go to delete_module(2)
// (O_NONBLOCK, O_TRUNC for a forced unload).
type RmmodArgs struct {
	Name  string `json:"name"`
	Flags int    `json:"flags,omitempty"`
}

// ModuleResult is the result of a successful insmod or rmmod: the kernel
// log lines printed while it ran. A refused insmod/rmmod is an Error with
// Code CodeErrno, Errno and Log set.
type ModuleResult struct {
	Module   string        `json:"module"`
	Log      []string      `json:"log,omitempty"`
	Duration time.Duration `json:"duration"`
}

// KlogArgs are the arguments of klog: records with Seq >= Since, at most
// Max of them (0: the agent's limit).
type KlogArgs struct {
	Since uint64 `json:"since,omitempty"`
	Max   int    `json:"max,omitempty"`
}

// KlogResult is the result of klog. Next is the cursor to pass as Since to
// get only later records; More says records were left out by a limit.
type KlogResult struct {
	Records []LogRecord `json:"records,omitempty"`
	Next    uint64      `json:"next"`
	More    bool        `json:"more,omitempty"`
}

// LogRecord is one /dev/kmsg record.
type LogRecord struct {
	Seq      uint64 `json:"seq"`
	Level    int    `json:"level"`              // 0 (emerg) .. 7 (debug)
	Facility int    `json:"facility,omitempty"` // 0 is the kernel
	Usec     uint64 `json:"usec"`               // microseconds since boot
	Text     string `json:"text"`
}

// String renders the record the way dmesg does: "[   12.345678] text".
func (r LogRecord) String() string {
	return fmt.Sprintf("[%5d.%06d] %s", r.Usec/1e6, r.Usec%1e6, r.Text)
}

// ErrFrameTooLarge is returned by FrameReader.Next for a line longer than
// its limit. The reader has skipped that line and can be used again.
var ErrFrameTooLarge = errors.New("frame too large")

// FrameReader reads newline-terminated frames with a size limit.
type FrameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewFrameReader returns a reader of frames of at most max bytes (the
// newline not counted); max <= 0 means MaxFrame.
func NewFrameReader(r io.Reader, max int) *FrameReader {
	if max <= 0 {
		max = MaxFrame
	}
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Next returns the next frame without its newline. The slice is valid until
// the next call. Empty lines are skipped. A final line without a newline
// followed by EOF is returned as a frame; the next call returns io.EOF.
func (f *FrameReader) Next() ([]byte, error) {
	for {
		f.buf = f.buf[:0]
		tooLarge := false
		for {
			chunk, err := f.r.ReadSlice('\n')
			if !tooLarge {
				if len(f.buf)+len(chunk) > f.max+1 {
					tooLarge = true
					f.buf = f.buf[:0]
				} else {
					f.buf = append(f.buf, chunk...)
				}
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				if tooLarge {
					return nil, ErrFrameTooLarge
				}
				if err == io.EOF && len(f.buf) > 0 {
					return bytes.TrimRight(f.buf, "\r"), nil
				}
				return nil, err
			}
			break
		}
		if tooLarge {
			return nil, ErrFrameTooLarge
		}
		line := bytes.TrimRight(f.buf, "\r\n")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(line) > f.max {
			return nil, ErrFrameTooLarge
		}
		return line, nil
	}
}

// File mode bits as put carries them: the Unix permission bits plus setuid
// (04000), setgid (02000) and sticky (01000), whatever os.FileMode's own
// encoding of those is.
const (
	modeSetuid = 0o4000
	modeSetgid = 0o2000
	modeSticky = 0o1000
)

var specialModes = []struct {
	bit  uint32
	mode os.FileMode
}{{modeSetuid, os.ModeSetuid}, {modeSetgid, os.ModeSetgid}, {modeSticky, os.ModeSticky}}

// ModeBits converts an os.FileMode to the bits put carries.
func ModeBits(mode os.FileMode) uint32 {
	m := uint32(mode.Perm())
	for _, s := range specialModes {
		if mode&s.mode != 0 {
			m |= s.bit
		}
	}
	return m
}

// FileMode converts the bits put carries to an os.FileMode.
func FileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	for _, s := range specialModes {
		if m&s.bit != 0 {
			mode |= s.mode
		}
	}
	return mode
}
