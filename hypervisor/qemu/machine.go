package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/internal/ctxio"
	"github.com/ingot-build/ingot/internal/execx"
)

// killTimeout bounds a kill the driver does of its own accord (a start that failed half-way, a
// shutdown the guest ignored), where the caller's context may already have ended.
const killTimeout = 10 * time.Second

// Machine is a running QEMU process.
type Machine struct {
	driver   *Driver
	spec     hypervisor.Spec
	argv     []string
	accel    Accel
	firmware firmware.Firmware
	cmd      *exec.Cmd
	wait     func() error // QEMU's exit (execx.Start); once procDone is closed it returns at once
	qmp      *monitor
	console  *hypervisor.ConsoleLog
	stderr   *execx.Tail
	sshAddr  string
	log      *slog.Logger

	consoleDone chan struct{} // QEMU's stdout reached its end: the console log has every byte
	procDone    chan struct{} // QEMU exited and its console is read to the end

	migrateMu sync.Mutex // one Checkpoint or Resume at a time: QEMU runs one migration at a time

	done     chan struct{} // the guest stopped running
	doneOnce sync.Once

	mu       sync.Mutex
	events   []hypervisor.Event
	err      error
	stopping bool // Shutdown or Kill asked for the end: an exit is then not an error
}

var (
	_ hypervisor.Machine   = (*Machine)(nil)
	_ hypervisor.KeySender = (*Machine)(nil)
)

func (m *Machine) SSHAddr() string          { return m.sshAddr }
func (m *Machine) ConsolePath() string      { return m.console.Path() }
func (m *Machine) ConsoleTail(n int) string { return m.console.Tail(n) }
func (m *Machine) Done() <-chan struct{}    { return m.done }

// PID is QEMU's process id.
func (m *Machine) PID() int { return m.cmd.Process.Pid }

// Accel is the accelerator the machine runs with.
func (m *Machine) Accel() Accel { return m.accel }

// Firmware is the firmware the machine booted.
func (m *Machine) Firmware() firmware.Firmware { return m.firmware }

// CommandLine is QEMU's command line, quoted so a person can paste it to reproduce the machine.
func (m *Machine) CommandLine() string { return execx.Quote(m.argv) }

func (m *Machine) Events() []hypervisor.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]hypervisor.Event(nil), m.events...)
}

func (m *Machine) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// finish marks the guest as no longer running, with err as the reason (nil: a clean power-off).
func (m *Machine) finish(err error) {
	m.doneOnce.Do(func() {
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
		close(m.done)
	})
}

func (m *Machine) onEvent(e qmp.Event) {
	ev := hypervisor.Event{
		Name: e.Event,
		Time: time.Unix(e.Timestamp.Seconds, e.Timestamp.Microseconds*1000),
		Data: e.Data,
	}
	m.mu.Lock()
	m.events = append(m.events, ev)
	m.mu.Unlock()
	m.log.Debug("qmp event", "event", ev.String())
	switch e.Event {
	case "GUEST_PANICKED":
		// Give the console a moment to deliver the panic message the kernel printed before
		// it signalled pvpanic, so the error carries it.
		go func() {
			select {
			case <-time.After(300 * time.Millisecond):
			case <-m.procDone:
			}
			m.finish(m.console.GuestError(fmt.Sprintf("the guest panicked (%s)", ev)))
		}()
	}
}

func (m *Machine) onConsolePanic() {
	go func() {
		// The kernel prints its backtrace after this line; wait for it, unless pvpanic reports first.
		select {
		case <-m.done:
			return
		case <-time.After(2 * time.Second):
		}
		m.finish(m.console.GuestError("the guest kernel panicked (seen on the serial console)"))
	}()
}

// reap waits for QEMU to exit and records why.
func (m *Machine) reap(ln *net.UnixListener) {
	err := m.wait()
	ln.Close()
	<-m.consoleDone // all output is in before anyone reads the tail
	if cerr := m.console.Close(); cerr != nil {
		m.log.Warn("the console log is incomplete", "path", m.console.Path(), "err", cerr)
	}
	close(m.procDone)
	if m.qmp != nil {
		m.qmp.close()
	}
	m.mu.Lock()
	stopping := m.stopping
	m.mu.Unlock()
	switch {
	case err == nil || stopping:
		m.finish(nil)
	default:
		msg := strings.TrimSpace(string(m.stderr.Bytes()))
		if msg != "" {
			msg = ": " + msg
		}
		m.finish(m.console.GuestError(fmt.Sprintf("QEMU exited unexpectedly (%v)%s", err, msg)))
	}
}

// Wait waits until QEMU exits and returns Err.
func (m *Machine) Wait(ctx context.Context) error {
	select {
	case <-m.procDone:
		return m.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill stops QEMU at once: SIGKILL to its process group. It returns once QEMU has exited and
// its console is read to the end, or when ctx ends.
func (m *Machine) Kill(ctx context.Context) error {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	select {
	case <-m.procDone:
		return nil
	default:
	}
	if err := execx.KillGroup(m.cmd); err != nil {
		return fmt.Errorf("kill QEMU: %w", err)
	}
	select {
	case <-m.procDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kill QEMU (pid %d): still running after SIGKILL: %w", m.cmd.Process.Pid, ctx.Err())
	}
}

// Shutdown powers the guest off: the ACPI power button (QMP system_powerdown), a wait bounded by
// the driver's shutdown timeout and ctx, then QMP quit, then SIGKILL.
func (m *Machine) Shutdown(ctx context.Context) error {
	select {
	case <-m.procDone:
		return nil
	default:
	}
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()

	grace, cancel := context.WithTimeout(ctx, m.driver.shutdownTimeout)
	defer cancel()
	started := time.Now()
	cmdCtx, cmdCancel := context.WithTimeout(ctx, 5*time.Second)
	defer cmdCancel()
	if err := m.qmp.run(cmdCtx, "system_powerdown", nil, nil); err != nil {
		m.log.Warn("ACPI power-off request failed; quitting QEMU", "err", err)
	} else {
		select {
		case <-m.procDone:
			m.log.Debug("guest powered off", "after", time.Since(started))
			return nil
		case <-grace.Done():
		}
	}
	forced := fmt.Errorf("%w within %s of the ACPI power button", hypervisor.ErrForced, time.Since(started).Round(time.Second))
	// quit flushes QEMU's block layer: the image file is consistent, the guest's filesystems
	// may not be (it never shut down).
	qctx, qcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer qcancel()
	if err := m.qmp.run(qctx, "quit", nil, nil); err == nil || isEOF(err) {
		select {
		case <-m.procDone:
			return fmt.Errorf("%w; QEMU was quit over QMP", forced)
		case <-qctx.Done():
		}
	}
	kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer kcancel()
	if err := m.Kill(kctx); err != nil {
		return errors.Join(forced, err)
	}
	return fmt.Errorf("%w; QEMU was killed", forced)
}

// isEOF: QEMU closes the monitor as it quits, so a quit may see the connection end instead of
// its reply.
func isEOF(err error) bool {
	s := err.Error()
	return strings.Contains(s, "EOF") || strings.Contains(s, "connection is closed") || strings.Contains(s, "unexpected end of JSON")
}

// SendKeys types a boot command (Packer's syntax, see hypervisor.ParseKeys) on the machine's
// keyboard through QMP: send-key for key presses, input-send-event for keys held and released
// (<leftCtrlOn> … <leftCtrlOff>).
func (m *Machine) SendKeys(ctx context.Context, sequence string) error {
	actions, err := hypervisor.ParseKeys(sequence)
	if err != nil {
		return err
	}
	// A wait between keys ends when the guest stops. (QMP commands keep ctx: ending one closes
	// the monitor, which a guest paused by a panic still needs for an orderly quit.)
	typing, stop := hypervisor.UntilStopped(ctx, m.done, func() error {
		return fmt.Errorf("the guest stopped while keys were typed: %w", m.Err())
	})
	defer stop()
	key := func(qcode string, down bool) map[string]any {
		return map[string]any{"type": "key", "data": map[string]any{
			"down": down, "key": map[string]any{"type": "qcode", "data": qcode}}}
	}
	send := func(events ...map[string]any) error {
		return m.qmp.run(ctx, "input-send-event", map[string]any{"events": events}, nil)
	}
	for i, a := range actions {
		var err error
		switch a.Kind {
		case hypervisor.Wait:
			err = ctxio.Sleep(typing, a.Wait)
		case hypervisor.Down:
			err = send(key(a.Key, true))
		case hypervisor.Up:
			err = send(key(a.Key, false))
		case hypervisor.Press:
			// send-key presses, holds (hold-time) and releases, as a person would; a bare
			// down/up pair in one instant can be missed by firmware polling the keyboard.
			keys := []map[string]string{{"type": "qcode", "data": a.Key}}
			if a.Shift {
				keys = append([]map[string]string{{"type": "qcode", "data": "shift"}}, keys...)
			}
			err = m.qmp.run(ctx, "send-key", map[string]any{"keys": keys, "hold-time": 50}, nil)
			if err == nil {
				err = ctxio.Sleep(typing, m.driver.keyInterval)
			}
		}
		if err != nil {
			if ctx.Err() == nil && typing.Err() != nil {
				err = context.Cause(typing)
			}
			return fmt.Errorf("type boot command (key %d of %d): %w", i+1, len(actions), err)
		}
	}
	return nil
}
