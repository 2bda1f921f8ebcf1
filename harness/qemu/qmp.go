package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// QMP is a connection to a QEMU's machine protocol socket (Config.QMPSocket),
// used to save a running guest with QEMU's migration.
type QMP struct {
	conn net.Conn
	r    *bufio.Reader
}

// QMPError is an error QEMU answered a command with.
type QMPError struct {
	Command, Class, Desc string
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("QMP %s: %s: %s", e.Command, e.Class, e.Desc)
}

// DialQMP connects to the socket (waiting, within ctx, for QEMU to create
// it) and leaves capabilities negotiation mode.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var conn net.Conn
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("QMP socket %s: %w (last: %v)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := q.r.ReadBytes('\n'); err != nil { // the greeting
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %w", err)
	}
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

// Execute runs one command; result, if not nil, receives its return value.
// Asynchronous events that arrive meanwhile are skipped.
func (q *QMP) Execute(ctx context.Context, cmd string, args, result any) error {
	stop := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Now()) })
	defer stop()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("QMP %s: %w", cmd, q.ctxErr(ctx, err))
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("QMP %s: %w", cmd, q.ctxErr(ctx, err))
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return fmt.Errorf("QMP %s: bad reply %q: %w", cmd, line, err)
		}
		switch {
		case resp.Error != nil:
			return &QMPError{Command: cmd, Class: resp.Error.Class, Desc: resp.Error.Desc}
		case resp.Return != nil:
			if result != nil {
				return json.Unmarshal(resp.Return, result)
			}
			return nil
		}
		// An event: not our answer.
	}
}

func (q *QMP) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), err)
	}
	return err
}

// ignoreShared leaves RAM in a shared Config.MemoryFile out of a saved
// state; both ends of a migration must agree on it, so it is always on.
var ignoreShared = map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}

// SaveState stops the guest and writes its whole state to path with QEMU's
// migration; a guest started with Config.Incoming = path resumes from
// there (Resume). The guest is stopped afterwards. The file appears only
// when complete.
func (q *QMP) SaveState(ctx context.Context, path string) error {
	// The guest is not stopped first: the state records whether it ran,
	// and a guest saved stopped stays stopped when resumed. Migration stops
	// it itself for the last pass. QEMU throttles migration to 32 MiB/s by default, meant for live
	// migration over a shared network; a stopped guest going to a local
	// file should go as fast as the disk takes it.
	if err := q.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil); err != nil {
		return err
	}
	if err := q.Execute(ctx, "migrate-set-capabilities", ignoreShared, nil); err != nil {
		return err
	}
	tmp := path + ".partial"
	if err := q.Execute(ctx, "migrate", map[string]any{"uri": "exec:cat > " + shellQuote(tmp)}, nil); err != nil {
		return err
	}
	for {
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := q.Execute(ctx, "query-migrate", nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "completed":
			return os.Rename(tmp, path)
		case "failed", "cancelled":
			os.Remove(tmp)
			return fmt.Errorf("QEMU's migration to %s %s: %s", tmp, st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			os.Remove(tmp)
			return fmt.Errorf("saving the guest's state: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Resume loads a state saved by SaveState into a QEMU started with
// Config.Incoming; the guest runs once it is loaded. A state that does not
// load makes QEMU exit.
func (q *QMP) Resume(ctx context.Context, path string) error {
	if err := q.Execute(ctx, "migrate-set-capabilities", ignoreShared, nil); err != nil {
		return err
	}
	return q.Execute(ctx, "migrate-incoming", map[string]any{"uri": "exec:cat " + shellQuote(path)}, nil)
}
