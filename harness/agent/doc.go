// Package agent is the host side of the Layer 4.5 guest agent: a client for
// the agent that runs as PID 1 in every test guest (layer45/vmimages/agent)
// and answers over a virtio-serial port.
//
// The harness starts QEMU with
//
//	-device virtio-serial-pci
//	-chardev socket,id=agent,path=SOCK,server=on,wait=off
//	-device virtserialport,chardev=agent,name=org.layer45.agent
//
// dials SOCK and hands the connection to Dial, which waits for the agent's
// hello (kernel release, uptime, the result of every boot step) and returns
// a Client:
//
//	c, err := agent.Dial(ctx, conn, agent.WithTranscript(save))
//	res, err := c.Run(ctx, agent.Cmd{Argv: []string{"uname", "-a"}})
//	if err == nil { err = res.Err() } // non-zero exit as an error
//	_, err = c.LoadModule(ctx, "/lib/modules/layer4_5.ko", "")
//	var me *agent.ModuleError
//	if errors.As(err, &me) { ... me.Errno, me.Log ... }
//	recs, cursor, err := c.KernelLog(ctx, 0)
//	err = c.PowerOff(ctx)
//
// # API
//
//	func Dial(ctx context.Context, conn io.ReadWriteCloser, opts ...Option) (*Client, error)
//	func (c *Client) Hello() Hello
//	func (c *Client) Ping(ctx) error
//	func (c *Client) Run(ctx, Cmd) (*Result, error)
//	func (c *Client) Start(ctx, Cmd) (*Process, error)
//	func (p *Process) Wait(ctx, timeout time.Duration) (*Result, error)
//	func (p *Process) Signal(ctx, sig syscall.Signal) (*Result, error)
//	func (p *Process) Stop(ctx) (*Result, error)
//	func (c *Client) StartPty(ctx, PtyCmd) (*Pty, error)   // a program on a terminal; Pty embeds *Process
//	func (p *Pty) Write(ctx, data []byte) (int, error)
//	func (p *Pty) Read(ctx, wait time.Duration) ([]byte, *Result, error)
//	func (p *Pty) Resize(ctx, rows, cols uint16) error
//	func (c *Client) PutFile(ctx, path string, data []byte, mode os.FileMode) error
//	func (c *Client) ReadFile(ctx, path string) ([]byte, error)
//	func (c *Client) LoadModule(ctx, guestPath, params string) (*ModuleResult, error)
//	func (c *Client) UnloadModule(ctx, name string, opts ...UnloadOption) (*ModuleResult, error)
//	func (c *Client) KernelLog(ctx, since uint64) ([]LogRecord, uint64, error)
//	func (c *Client) Sync(ctx) error
//	func (c *Client) PowerOff(ctx) error
//	func (c *Client) Close() error
//
// Options: WithTranscript(func(dir string, frame []byte)),
// WithTranscriptWriter(io.Writer), WithHelloRetry(time.Duration) (Dial asks
// for the hello again if the first one was missed). UnloadModule option:
// Force(). Result.Err() turns a non-zero exit into an *ExitError.
//
// # Deadlines and a guest that stops answering
//
// Every call honours its context. If the agent has not answered when the
// context is done, the call returns an error that names the verb and wraps
// ctx.Err() (normally context.DeadlineExceeded): the harness reports that
// as "guest stopped answering" with the console attached. The client is
// then poisoned — the reply may still come and the stream would be out of
// step — and every later call fails at once with an error wrapping
// ErrBroken and the first failure. Only one call is in flight at a time;
// concurrent callers queue on a mutex.
//
// Run, Process.Wait and Process.Signal give the agent a deadline a little
// shorter than the context's, so that a program that hangs is killed in the
// guest (Result.TimedOut) and the client stays usable.
//
// # Errors
//
// Failures reported by the agent are *AgentError values carrying the
// agent's message; when a system call failed they unwrap to its
// syscall.Errno, so errors.Is(err, fs.ErrNotExist) works for ReadFile. A
// refused module load or unload is a *ModuleError with the kernel's errno
// and the kernel log lines printed during the call; errors.Is(err,
// syscall.EINVAL) works on it too. A program that ran and exited non-zero is
// not an error of Run: call Result.Err for that.
//
// # Evidence
//
// WithTranscript (or WithTranscriptWriter) sees every frame sent and
// received, so the harness can store the protocol exchange of a failing
// test next to its console log.
//
// # Tests
//
// The tests run the real agent server (layer45/vmimages/agent/server) over
// net.Pipe with a fake kernel for module loading, the kernel log and
// power-off. The agent as PID 1 in a real guest is exercised by every test
// of layer45/harness/vm.
//
// # Protocol
//
// Newline-delimited JSON frames with request ids; see package
// layer45/vmimages/agent/proto.
package agent
