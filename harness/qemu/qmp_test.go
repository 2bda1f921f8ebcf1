package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeQMP answers like QEMU: a greeting, then one reply per command, with
// an event before some replies. The migration "writes" the file its exec
// URI names after two polls.
func fakeQMP(t *testing.T, failMigration bool) (string, *[]string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var cmds []string
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		w := func(s string) { c.Write([]byte(s + "\n")) }
		w(`{"QMP": {"version": {}, "capabilities": []}}`)
		r := bufio.NewReader(c)
		polls := 0
		var target string
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct {
				Execute   string         `json:"execute"`
				Arguments map[string]any `json:"arguments"`
			}
			json.Unmarshal(line, &req)
			cmd := req.Execute
			if uri, ok := req.Arguments["uri"].(string); ok && cmd == "migrate-incoming" {
				cmd += " " + uri
			}
			if caps, ok := req.Arguments["capabilities"].([]any); ok {
				for _, c := range caps {
					cmd += fmt.Sprintf(" %v=%v", c.(map[string]any)["capability"], c.(map[string]any)["state"])
				}
			}
			cmds = append(cmds, cmd)
			switch req.Execute {
			case "stop":
				w(`{"event": "STOP", "timestamp": {}}`)
				w(`{"return": {}}`)
			case "migrate":
				target = strings.TrimPrefix(req.Arguments["uri"].(string), "exec:cat > ")
				w(`{"return": {}}`)
			case "query-migrate":
				polls++
				switch {
				case polls < 3:
					w(`{"return": {"status": "active"}}`)
				case failMigration:
					w(`{"return": {"status": "failed", "error-desc": "disk full"}}`)
				default:
					os.WriteFile(strings.Trim(target, "'"), []byte("state"), 0o644)
					w(`{"return": {"status": "completed"}}`)
				}
			case "bogus":
				w(`{"error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}}`)
			default:
				w(`{"return": {}}`)
			}
		}
	}()
	return sock, &cmds
}

// dialFakeQMP connects to a fakeQMP, both closed when t ends.
func dialFakeQMP(t *testing.T, failMigration bool) (context.Context, *QMP, *[]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	sock, cmds := fakeQMP(t, failMigration)
	q, err := DialQMP(ctx, sock)
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	return ctx, q, cmds
}

func TestQMPSaveState(t *testing.T) {
	ctx, q, cmds := dialFakeQMP(t, false)

	var qe *QMPError
	err := q.Execute(ctx, "bogus", nil, nil)
	require.True(t, errors.As(err, &qe), "error %v is not a *QMPError", err)
	require.Equal(t, "CommandNotFound", qe.Class)

	path := filepath.Join(t.TempDir(), "state")
	require.NoError(t, q.SaveState(ctx, path))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "state", string(data))
	require.Equal(t, []string{"qmp_capabilities", "bogus", "migrate-set-parameters", "migrate-set-capabilities x-ignore-shared=true", "migrate",
		"query-migrate", "query-migrate", "query-migrate"}, *cmds)
	_, err = os.Stat(path + ".partial")
	require.True(t, os.IsNotExist(err), "the partial file was left behind")
}

func TestQMPSaveStateFailureLeavesNoFile(t *testing.T) {
	ctx, q, _ := dialFakeQMP(t, true)
	path := filepath.Join(t.TempDir(), "state")
	err := q.SaveState(ctx, path)
	require.ErrorContains(t, err, "failed: disk full")
	_, err = os.Stat(path)
	require.True(t, os.IsNotExist(err), "a failed save left a state file")
}

func TestQMPResumeLoadsTheStateWithTheSaversCapabilities(t *testing.T) {
	ctx, q, cmds := dialFakeQMP(t, false)
	require.NoError(t, q.Resume(ctx, "/cache/snap shot/state"))
	require.Equal(t, []string{"qmp_capabilities", "migrate-set-capabilities x-ignore-shared=true",
		"migrate-incoming exec:cat '/cache/snap shot/state'"}, *cmds)
}

func TestQMPDialGivesUpWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := DialQMP(ctx, filepath.Join(t.TempDir(), "never.sock"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
