package console

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("console: write to closed stream")

// Stream receives the raw bytes of a guest's console (it is an
// io.WriteCloser: hand it to QEMU's stdout or io.Copy the chardev into it)
// and, for every line:
//
//   - writes it, raw, with the time since start to the evidence file,
//   - hands it, without terminal escapes, to the log function as
//     "name  12.345s| line",
//   - remembers it for Tail,
//   - feeds it to the crash detector, and calls the report callback for
//     every crash report that completes.
//
// Lines end at '\n' (a '\r' before it is dropped); longer lines than the
// configured cap are split. Write and Close are serialised; Reports and
// Tail may be called from any goroutine at any time, also from the
// callbacks.
type Stream struct {
	name     string
	log      func(string)
	file     io.Writer
	start    time.Time
	now      func() time.Time
	onReport func(Report)
	maxLine  int

	wmu     sync.Mutex // serialises Write and Close
	partial []byte     // bytes of the line not yet ended
	det     *Detector
	fileErr error
	closed  bool
	settle  time.Duration
	idle    *time.Timer

	mu      sync.Mutex // guards what readers see
	reports []Report
	tail    []string // ring of the last tailCap lines
	next    int      // where the next line goes in tail once it is full
	tailCap int
}

// StreamOption configures a Stream.
type StreamOption func(*Stream)

// WithLog sends every line, prefixed with the stream's name and the time
// since start, to fn (t.Log, log.Println, ...).
func WithLog(fn func(string)) StreamOption { return func(s *Stream) { s.log = fn } }

// WithFile writes every raw line, prefixed with the time since start, to w.
// The stream does not close w. Write errors do not stop the stream; the
// first one is returned by Close.
func WithFile(w io.Writer) StreamOption { return func(s *Stream) { s.file = w } }

// WithStart sets the time the relative timestamps count from (default: when
// NewStream was called). Pass the time the guest was started.
func WithStart(t time.Time) StreamOption { return func(s *Stream) { s.start = t } }

// WithClock replaces time.Now for the timestamps (for tests).
func WithClock(now func() time.Time) StreamOption { return func(s *Stream) { s.now = now } }

// WithReport calls fn for every crash report, in order, as soon as it is
// complete. fn runs on the goroutine that writes to the stream.
func WithReport(fn func(Report)) StreamOption { return func(s *Stream) { s.onReport = fn } }

// WithDetector replaces the default detector, for example one made with
// other context options. A nil detector turns crash detection off.
func WithDetector(d *Detector) StreamOption { return func(s *Stream) { s.det = d } }

// WithSettle sets how long the console must stay quiet before a crash
// report still gathering its trailing context is completed (default 2s):
// a guest that oopses and then idles prints nothing more, and the test
// should hear of the crash without waiting for the stream to close.
func WithSettle(d time.Duration) StreamOption { return func(s *Stream) { s.settle = d } }

// WithTailLines sets how many lines are kept for Tail (default 200).
func WithTailLines(n int) StreamOption { return func(s *Stream) { s.tailCap = max(n, 1) } }

// WithMaxLineLength sets the length in bytes after which an unended line is
// split (default 4096).
func WithMaxLineLength(n int) StreamOption { return func(s *Stream) { s.maxLine = max(n, 1) } }

// NewStream returns a stream for the console of the guest called name.
func NewStream(name string, opts ...StreamOption) *Stream {
	s := &Stream{
		name:    name,
		now:     time.Now,
		det:     NewDetector(),
		tailCap: 200,
		maxLine: 4096,
		settle:  2 * time.Second,
	}
	for _, o := range opts {
		o(s)
	}
	if s.start.IsZero() {
		s.start = s.now()
	}
	return s
}

// Write processes console output. It never fails before Close: console
// output must keep flowing even if the evidence file cannot be written.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	n := len(p)
	for len(p) > 0 {
		room := s.maxLine - len(s.partial) // bytes the line may still take
		if i := bytes.IndexByte(p[:min(len(p), room+1)], '\n'); i >= 0 {
			s.line(append(s.partial, p[:i]...))
			s.partial, p = s.partial[:0], p[i+1:]
			continue
		}
		if len(p) <= room {
			s.partial = append(s.partial, p...)
			break
		}
		// The line is longer than the cap: split it.
		s.line(append(s.partial, p[:room]...))
		s.partial, p = s.partial[:0], p[room:]
	}
	if s.det != nil && s.settle > 0 {
		if s.idle == nil {
			s.idle = time.AfterFunc(s.settle, s.settled)
		} else {
			s.idle.Reset(s.settle)
		}
	}
	return n, nil
}

// settled completes a pending crash report once the console went quiet.
func (s *Stream) settled() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.closed {
		s.publish(s.det.Flush())
	}
}

// Close processes an unended last line and completes a crash report in
// progress. It returns the first error writing the evidence file.
func (s *Stream) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return s.fileErr
	}
	s.closed = true
	if s.idle != nil {
		s.idle.Stop()
	}
	if len(s.partial) > 0 {
		s.line(s.partial)
		s.partial = nil
	}
	if s.det != nil {
		s.publish(s.det.Flush())
	}
	return s.fileErr
}

// line handles one complete line (without '\n'). Called with wmu held.
func (s *Stream) line(raw []byte) {
	if n := len(raw); n > 0 && raw[n-1] == '\r' {
		raw = raw[:n-1]
	}
	elapsed := s.now().Sub(s.start).Seconds()
	if s.file != nil && s.fileErr == nil {
		if _, err := fmt.Fprintf(s.file, "%10.6f %s\n", elapsed, raw); err != nil {
			s.fileErr = fmt.Errorf("console %s: writing evidence: %w", s.name, err)
		}
	}
	text := string(raw)
	clean := cleanText(text)
	if s.log != nil {
		s.log(fmt.Sprintf("%s %8.3fs| %s", s.name, elapsed, clean))
	}
	s.mu.Lock()
	if len(s.tail) < s.tailCap {
		s.tail = append(s.tail, clean)
	} else {
		s.tail[s.next] = clean
		s.next = (s.next + 1) % s.tailCap
	}
	s.mu.Unlock()
	if s.det != nil {
		s.publish(s.det.feedRaw(text))
	}
}

// publish records reports and runs the callback outside s.mu, so that
// the callback may call Reports or Tail.
func (s *Stream) publish(reps []Report) {
	if len(reps) == 0 {
		return
	}
	s.mu.Lock()
	s.reports = append(s.reports, reps...)
	s.mu.Unlock()
	if s.onReport != nil {
		for _, r := range reps {
			s.onReport(r)
		}
	}
}

// Name returns the guest name the stream was made for.
func (s *Stream) Name() string { return s.name }

// Reports returns the crash reports found so far.
func (s *Stream) Reports() []Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Report(nil), s.reports...)
}

// Tail returns the last n lines (fewer if fewer were kept), oldest first,
// cleaned of terminal escapes: for attaching to failure messages.
func (s *Stream) Tail(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ordered := make([]string, 0, len(s.tail))
	ordered = append(append(ordered, s.tail[s.next:]...), s.tail[:s.next]...)
	if n < len(ordered) {
		ordered = ordered[len(ordered)-max(n, 0):]
	}
	return ordered
}
