package vm

import (
	"context"
	"strings"

	"layer45/harness/agent"
)

// StartPty starts a program on a new terminal in the guest (an interactive
// shell: l45 shell). Its reads, writes and resizes go straight to the
// agent; the program ends with the guest at the latest.
func (m *Machine) StartPty(ctx context.Context, cmd agent.PtyCmd) (*agent.Pty, error) {
	var p *agent.Pty
	err := m.do(ctx, "start on a terminal "+strings.Join(cmd.Argv, " "), 0, func(ctx context.Context, a *agent.Client) error {
		var err error
		p, err = a.StartPty(ctx, cmd)
		return err
	})
	return p, err
}
