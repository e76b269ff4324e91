package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// monitor wraps go-qemu's QMP socket monitor with what it lacks (shared/STYLE.md, known traps):
//   - deadlines: its Connect and Run block forever on a silent QEMU, so each call runs beside a
//     select on the context and on QEMU's exit, and giving up closes the connection, which is
//     the only way to unblock it;
//   - events: its event channel is unbuffered and, once subscribed, blocks command replies
//     until read, so events are subscribed and drained by a goroutine straight after Connect.
type monitor struct {
	mon    *qmp.SocketMonitor
	closed chan struct{}
	once   sync.Once
}

// dialQMP connects to QEMU's QMP socket and completes the capabilities handshake, giving up when
// ctx ends or gone is closed (QEMU exited). onEvent is called, in order, for every event.
func dialQMP(ctx context.Context, path string, gone <-chan struct{}, onEvent func(qmp.Event)) (*monitor, error) {
	mon, err := qmp.NewSocketMonitor("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to QMP at %s: %w", path, err)
	}
	m := &monitor{mon: mon, closed: make(chan struct{})}
	connected := make(chan error, 1)
	go func() { connected <- mon.Connect() }()
	select {
	case err := <-connected:
		if err != nil {
			m.close()
			return nil, fmt.Errorf("QMP handshake: %w", err)
		}
	case <-ctx.Done():
		m.close()
		return nil, fmt.Errorf("QMP handshake: %w", ctx.Err())
	case <-gone:
		m.close()
		return nil, errors.New("QMP handshake: QEMU exited")
	}
	events, err := mon.Events(context.Background())
	if err != nil {
		m.close()
		return nil, fmt.Errorf("subscribe to QMP events: %w", err)
	}
	go func() {
		for e := range events {
			onEvent(e)
		}
	}()
	return m, nil
}

func (m *monitor) close() {
	m.once.Do(func() {
		close(m.closed)
		_ = m.mon.Disconnect()
	})
}

// qmpError is an error QEMU returned for a command.
type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return e.Class + ": " + e.Desc }

// run executes a QMP command and decodes its "return" value into out (if not nil). If ctx ends
// first, the connection is closed: go-qemu cannot abandon one command and go on.
func (m *monitor) run(ctx context.Context, command string, args, out any) error {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	if err := ctx.Err(); err != nil { // never sent: the connection stays usable
		return fmt.Errorf("QMP %s: %w", command, err)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("QMP %s: %w", command, err)
	}
	type result struct {
		raw []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		raw, err := m.mon.Run(b)
		done <- result{raw, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		m.close()
		return fmt.Errorf("QMP %s: %w", command, ctx.Err())
	case <-m.closed:
		return fmt.Errorf("QMP %s: the monitor connection is closed", command)
	}
	if r.err != nil {
		return fmt.Errorf("QMP %s: %w", command, r.err)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
		Error  *qmpError       `json:"error"`
	}
	if err := json.Unmarshal(r.raw, &resp); err != nil {
		return fmt.Errorf("QMP %s: decode reply %q: %w", command, r.raw, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("QMP %s: %w", command, resp.Error)
	}
	if out != nil && len(resp.Return) > 0 {
		if err := json.Unmarshal(resp.Return, out); err != nil {
			return fmt.Errorf("QMP %s: decode %s: %w", command, resp.Return, err)
		}
	}
	return nil
}

// hmp runs a human monitor command; its output is text.
func (m *monitor) hmp(ctx context.Context, line string) (string, error) {
	var out string
	err := m.run(ctx, "human-monitor-command", map[string]string{"command-line": line}, &out)
	return out, err
}
