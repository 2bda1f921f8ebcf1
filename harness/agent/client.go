package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"layer45/vmimages/agent/proto"
)

// Hello is what the agent reports when it starts: protocol and agent
// version, kernel release, uptime, and every boot step with its outcome.
type Hello = proto.Hello

// BootStep is one step the agent took while booting (see Hello.Boot).
type BootStep = proto.BootStep

// LogRecord is one kernel log record (/dev/kmsg): sequence number, level,
// microseconds since boot and text. Its String method formats it like dmesg.
type LogRecord = proto.LogRecord

// Transcript directions passed to a transcript hook.
const (
	Sent     = "send" // host to guest
	Received = "recv" // guest to host
)

var (
	// ErrBroken is wrapped by every call on a client that an earlier
	// failure (a context that expired before the reply, a lost connection)
	// left out of step with the agent.
	ErrBroken = errors.New("agent client unusable after an earlier failure")
	// ErrClosed is returned by calls after Close.
	ErrClosed = errors.New("agent client closed")
	// ErrPoweredOff is returned by calls after PowerOff.
	ErrPoweredOff = errors.New("guest powered off")
	// ErrAgentRestarted is returned by a call during which a new agent
	// announced itself (the guest rebooted); the request may be lost.
	ErrAgentRestarted = errors.New("the guest agent restarted (guest rebooted?)")
	// ErrStillRunning is matched (errors.Is) by Process.Wait and
	// Process.Signal errors when the process did not exit in time.
	ErrStillRunning = errors.New("process still running")
	// ErrNoProcess is matched by errors for an unknown process handle.
	ErrNoProcess = errors.New("no such process handle")
	// ErrTruncated is wrapped by ReadFile's error when the file was larger
	// than the agent sends; the data returned is its beginning.
	ErrTruncated = errors.New("file truncated")
)

// Option configures a Client.
type Option func(*Client)

// WithTranscript calls fn with every frame sent (dir Sent) and received
// (dir Received), without its newline. fn must not keep frame. Calls are
// serialised.
func WithTranscript(fn func(dir string, frame []byte)) Option {
	return func(c *Client) { c.transcript = fn }
}

// WithTranscriptWriter writes every frame to w as a line
// "15:04:05.000 send {...}"; frames longer than 64 KiB are clipped.
func WithTranscriptWriter(w io.Writer) Option {
	return WithTranscript(func(dir string, frame []byte) {
		const max = 64 << 10
		line := frame
		suffix := ""
		if len(line) > max {
			line = line[:max]
			suffix = fmt.Sprintf(" ...(%d bytes in all)", len(frame))
		}
		fmt.Fprintf(w, "%s %s %s%s\n", time.Now().Format("15:04:05.000"), dir, line, suffix)
	})
}

// WithHelloRetry sets how often Dial asks for the hello again while it has
// none (the first one can be missed if the host connected late). Zero or
// negative disables asking. Default 2s.
func WithHelloRetry(every time.Duration) Option {
	return func(c *Client) { c.helloRetry = every }
}

// event is what the reader goroutine hands to callers.
type event struct {
	frame []byte
	err   error // proto.ErrFrameTooLarge: a frame was skipped
}

// Client talks to one guest agent. Its methods are safe for concurrent use;
// calls are made one at a time.
type Client struct {
	conn       io.ReadWriteCloser
	transcript func(dir string, frame []byte)
	helloRetry time.Duration

	tmu sync.Mutex // serialises transcript calls
	wmu sync.Mutex // serialises conn writes

	events   chan event
	readDone chan struct{} // closed when the reader stops; readErr is set
	readErr  error
	closed   chan struct{}
	closeErr error
	once     sync.Once

	mu     sync.Mutex // one call at a time; guards the fields below
	nextID uint64
	broken error
	// newHello is set when a hello from a restarted agent was seen after
	// Dial: the stream restarted under a call.
	newHello bool

	hmu   sync.Mutex
	hello Hello
}

// Dial waits for the agent's hello frame on conn (ctx bounds the wait) and
// returns a client that owns conn. On failure conn is closed.
func Dial(ctx context.Context, conn io.ReadWriteCloser, opts ...Option) (*Client, error) {
	c := &Client{
		conn:       conn,
		helloRetry: 2 * time.Second,
		events:     make(chan event),
		readDone:   make(chan struct{}),
		closed:     make(chan struct{}),
	}
	for _, o := range opts {
		o(c)
	}
	go c.read()
	c.mu.Lock()
	_, err := c.awaitHello(ctx, true)
	c.mu.Unlock()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("agent: waiting for the agent's hello: %w", err)
	}
	return c, nil
}

// Hello returns what the agent said when it started.
func (c *Client) Hello() Hello {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	return c.hello
}

// awaitHello waits for a hello frame; with ask it also asks for one every
// helloRetry. c.mu is held.
func (c *Client) awaitHello(ctx context.Context, ask bool) (Hello, error) {
	var tick <-chan time.Time
	if ask && c.helloRetry > 0 {
		t := time.NewTicker(c.helloRetry)
		defer t.Stop()
		tick = t.C
	}
	asking := false
	asked := make(chan struct{}, 1)
	for {
		select {
		case <-ctx.Done():
			return Hello{}, ctx.Err()
		case <-c.readDone:
			return Hello{}, c.lostErr()
		case <-tick:
			if asking {
				continue // the last request is still being written
			}
			c.nextID++
			b, _ := json.Marshal(proto.Request{ID: c.nextID, Verb: proto.VerbHello})
			asking = true
			go func() {
				c.writeFrame(b)
				asked <- struct{}{}
			}()
		case <-asked:
			asking = false
		case ev := <-c.events:
			if ev.err != nil {
				continue
			}
			var resp proto.Response
			if json.Unmarshal(ev.frame, &resp) != nil || resp.Verb != proto.VerbHello || resp.Error != nil {
				continue
			}
			var h Hello
			if err := json.Unmarshal(resp.Result, &h); err != nil {
				return Hello{}, fmt.Errorf("bad hello frame: %w", err)
			}
			c.setHello(h)
			return h, nil
		}
	}
}

func (c *Client) setHello(h Hello) {
	c.hmu.Lock()
	c.hello = h
	c.hmu.Unlock()
}

// read runs in its own goroutine and passes frames to callers.
func (c *Client) read() {
	defer close(c.readDone)
	fr := proto.NewFrameReader(c.conn, proto.MaxFrame)
	for {
		b, err := fr.Next()
		var ev event
		switch {
		case errors.Is(err, proto.ErrFrameTooLarge):
			c.record(Received, []byte(fmt.Sprintf("(a frame larger than %d bytes, skipped)", proto.MaxFrame)))
			ev.err = err
		case err != nil:
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			c.readErr = err
			return
		default:
			ev.frame = append([]byte(nil), b...)
			c.record(Received, ev.frame)
		}
		select {
		case c.events <- ev:
		case <-c.closed:
			c.readErr = ErrClosed
			return
		}
	}
}

func (c *Client) record(dir string, frame []byte) {
	if c.transcript == nil {
		return
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	c.transcript(dir, frame)
}

// writeFrame writes one frame (without newline) and records it.
func (c *Client) writeFrame(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.record(Sent, b)
	_, err := c.conn.Write(append(b, '\n'))
	return err
}

func (c *Client) lostErr() error {
	select {
	case <-c.closed:
		return ErrClosed
	default:
	}
	return fmt.Errorf("connection to the agent lost: %w", c.readErr)
}

func (c *Client) closedErr() error {
	select {
	case <-c.closed:
		return ErrClosed
	default:
		return nil
	}
}

// Close closes the connection. Calls in flight fail.
func (c *Client) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.closeErr = c.conn.Close()
	})
	return c.closeErr
}

// call sends one request and waits for its reply, decoding the result into
// result (if not nil). c.mu serialises calls.
func (c *Client) call(ctx context.Context, verb string, args, result any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.closedErr(); err != nil {
		return fmt.Errorf("agent %s: %w", verb, err)
	}
	if c.broken != nil {
		return fmt.Errorf("agent %s: not sent: %w: %w", verb, ErrBroken, c.broken)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("agent %s: not sent: %w", verb, err)
	}
	c.drain()

	c.nextID++
	id := c.nextID
	req := proto.Request{ID: id, Verb: verb}
	if args != nil {
		a, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("agent %s: encode arguments: %w", verb, err)
		}
		req.Args = a
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("agent %s: encode request: %w", verb, err)
	}
	if len(b) > proto.MaxFrame {
		return fmt.Errorf("agent %s: request of %d bytes is larger than the frame limit of %d", verb, len(b), proto.MaxFrame)
	}

	written := make(chan error, 1)
	go func() { written <- c.writeFrame(b) }()
	select {
	case err := <-written:
		if err != nil {
			return c.poison(fmt.Errorf("agent %s: send request: %w", verb, err))
		}
	case <-ctx.Done():
		return c.poison(fmt.Errorf("agent %s: the guest agent did not take the request: %w", verb, ctx.Err()))
	case <-c.closed:
		return fmt.Errorf("agent %s: %w", verb, ErrClosed)
	}

	for {
		select {
		case <-ctx.Done():
			return c.poison(fmt.Errorf("agent %s: no answer from the guest agent: %w", verb, ctx.Err()))
		case <-c.readDone:
			return c.poison(fmt.Errorf("agent %s: %w", verb, c.lostErr()))
		case ev := <-c.events:
			if ev.err != nil {
				// A reply too large to read; it was skipped whole.
				return fmt.Errorf("agent %s: reply: %w", verb, ev.err)
			}
			var resp proto.Response
			if err := json.Unmarshal(ev.frame, &resp); err != nil {
				continue // not a frame of ours (noise after a reconnect)
			}
			if resp.ID == 0 && resp.Verb == proto.VerbHello {
				c.takeHello(resp)
				return fmt.Errorf("agent %s: %w", verb, ErrAgentRestarted)
			}
			if resp.ID == 0 && resp.Error != nil {
				// The agent could not read our frame.
				return c.agentError(verb, resp.Error)
			}
			if resp.ID != id {
				continue // a late reply to an earlier request
			}
			if resp.Error != nil {
				return c.agentError(verb, resp.Error)
			}
			if result != nil && len(resp.Result) > 0 {
				if err := json.Unmarshal(resp.Result, result); err != nil {
					return fmt.Errorf("agent %s: decode reply: %w", verb, err)
				}
			}
			return nil
		}
	}
}

// drain consumes frames that arrived while no call was waiting: late
// replies, and hellos of a restarted agent.
func (c *Client) drain() {
	for {
		select {
		case ev := <-c.events:
			var resp proto.Response
			if ev.err == nil && json.Unmarshal(ev.frame, &resp) == nil && resp.ID == 0 && resp.Verb == proto.VerbHello {
				c.takeHello(resp)
			}
		default:
			return
		}
	}
}

func (c *Client) takeHello(resp proto.Response) {
	var h Hello
	if json.Unmarshal(resp.Result, &h) == nil {
		c.setHello(h)
		c.newHello = true
	}
}

// poison marks the client unusable and returns err.
func (c *Client) poison(err error) error {
	if c.broken == nil {
		c.broken = err
	}
	return err
}

// budget returns the time the agent may spend on a request: want (0: no
// limit of its own) shortened to finish a margin before ctx's deadline.
func budget(ctx context.Context, want time.Duration) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return want
	}
	left := time.Until(dl)
	margin := left / 10
	margin = max(margin, 250*time.Millisecond)
	margin = min(margin, 3*time.Second)
	b := left - margin
	if b <= 0 {
		b = time.Millisecond
	}
	if want > 0 && want < b {
		return want
	}
	return b
}
