package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
)

// Machine is a running transient domain and the volumes it was started from.
type Machine struct {
	driver   *Driver
	spec     hypervisor.Spec
	name     string
	conn     *conn
	dom      golibvirt.Domain
	accel    Accel
	firmware *firmware.Firmware // nil when libvirt chose (remote daemon) or for libvirt's default BIOS
	xml      string
	console  *hypervisor.ConsoleLog
	// consoleConn carries the console stream, on a connection of its own.
	consoleConn *rpcClient
	sshAddr     string
	tunnel      *tunnel
	vols        []machineVolume
	nvram       string // the variable store libvirt creates in the pool, by volume name
	log         *slog.Logger
	uploaded    transferStats

	cancelEvents context.CancelFunc
	consoleDone  chan struct{} // the console stream ended

	ended   chan struct{} // the domain is gone (or ingot lost it)
	endOnce sync.Once
	done    chan struct{} // teardown finished: disks copied back, volumes deleted

	mu          sync.Mutex
	events      []hypervisor.Event
	reason      error // why the guest stopped when it should not have; the first reason wins
	stopping    bool  // Shutdown or Kill asked for the end: a stop is then not an error
	err         error // Err's value, set before done closes
	teardownErr error
	downloaded  transferStats
}

// machineVolume is a volume the machine was started from.
type machineVolume struct {
	vol      golibvirt.StorageVol
	local    string
	writable bool // downloaded over local when the machine ends
}

var (
	_ hypervisor.Machine   = (*Machine)(nil)
	_ hypervisor.KeySender = (*Machine)(nil)
)

func (m *Machine) SSHAddr() string          { return m.sshAddr }
func (m *Machine) ConsolePath() string      { return m.console.Path() }
func (m *Machine) ConsoleTail(n int) string { return m.console.Tail(n) }

// Done is closed when the machine has ended: the domain stopped, the writable disks were copied
// back over their local files, and the build's volumes were deleted.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Name is the domain's name.
func (m *Machine) Name() string { return m.name }

// DomainXML is the XML the domain was created from.
func (m *Machine) DomainXML() string { return m.xml }

// Accel is the domain type the machine runs as, and why.
func (m *Machine) Accel() Accel { return m.accel }

// Firmware is the firmware the firmware package chose, or nil when libvirt chose it (remote
// daemons) or the machine boots libvirt's default BIOS.
func (m *Machine) Firmware() *firmware.Firmware { return m.firmware }

// Transfers are what went up when the machine started and what came back when it ended.
func (m *Machine) Transfers() (uploaded, downloaded string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.uploaded.String(), m.downloaded.String()
}

func (m *Machine) Events() []hypervisor.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]hypervisor.Event(nil), m.events...)
}

// Err is nil while the machine runs and after a clean power-off; a *hypervisor.GuestError when
// the guest stopped on its own in a way it should not have (a panic, a crash, someone else
// destroying it, the connection to libvirtd lost), possibly joined with a failure to copy its disks
// back.
func (m *Machine) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *Machine) record(name string, data map[string]any) {
	ev := hypervisor.Event{Name: name, Time: time.Now(), Data: data}
	m.mu.Lock()
	m.events = append(m.events, ev)
	m.mu.Unlock()
	m.log.Debug("libvirt event", "event", ev.String())
}

// watch follows the domain's events until it ends. The subscriptions are for every domain of the
// daemon (go-libvirt ignores the domain filter), so other domains' events are skipped.
func (m *Machine) watch(lifecycle <-chan golibvirt.DomainEventLifecycleMsg, reboots <-chan any) {
	// go-libvirt's subscription goroutines send on these channels without watching their
	// context: keep reading until they close, or they never unsubscribe.
	defer drain(lifecycle)
	defer drain(reboots)
	for lifecycle != nil || reboots != nil {
		select {
		case ev, ok := <-lifecycle:
			if !ok {
				lifecycle = nil
				continue
			}
			if ev.Dom.UUID != m.dom.UUID {
				continue
			}
			name, data, ok := lifecycleEvent(ev.Event, ev.Detail)
			if !ok {
				continue
			}
			m.record(name, data)
			switch golibvirt.DomainEventType(ev.Event) {
			case golibvirt.DomainEventCrashed:
				m.onGuestPanic(fmt.Sprintf("the guest panicked (libvirt: crashed, %s)", data["reason"]))
			case golibvirt.DomainEventStopped:
				var cause error
				if why := stoppedError(ev.Detail); why != "" {
					cause = m.console.GuestError(why)
				}
				m.end(cause)
				return
			}
		case ev, ok := <-reboots:
			if !ok {
				reboots = nil
				continue
			}
			if r, isReboot := ev.(*golibvirt.DomainEventCallbackRebootMsg); isReboot && r.Msg.Dom.UUID == m.dom.UUID {
				m.record(EventReset, nil)
			}
		case <-m.conn.gone():
			m.end(m.console.GuestError(fmt.Sprintf("lost the connection to libvirtd at %s (libvirtd destroys a domain whose creating connection is gone)", m.driver.target)))
			return
		case <-m.ended:
			return
		}
	}
	// Both event streams closed: the connection is gone.
	m.end(m.console.GuestError(fmt.Sprintf("lost the connection to libvirtd at %s", m.driver.target)))
}

// onGuestPanic reports a panic (pvpanic, with on_crash preserve: the guest is paused), after a
// moment for the console to deliver what the kernel printed before it signalled, then destroys
// the domain so that its disks come back and its volumes go.
func (m *Machine) onGuestPanic(reason string) {
	go func() {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-m.ended:
		}
		m.setReason(m.console.GuestError(reason))
		m.destroy()
	}()
}

// onConsolePanic catches a kernel panic on a guest without a pvpanic driver: the kernel prints its
// backtrace after the panic line; give it a moment, unless pvpanic reports first.
func (m *Machine) onConsolePanic() {
	go func() {
		select {
		case <-m.ended:
			return
		case <-time.After(2 * time.Second):
		}
		m.setReason(m.console.GuestError("the guest kernel panicked (seen on the serial console)"))
		m.destroy()
	}()
}

func (m *Machine) setReason(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reason == nil {
		m.reason = err
	}
}

// destroy stops the domain at once (SIGTERM, then SIGKILL after libvirt's grace) and ends the
// machine. A domain already gone is not an error.
func (m *Machine) destroy() error {
	err := m.conn.DomainDestroy(m.dom)
	if err != nil && (isCode(err, golibvirt.ErrNoDomain) || isCode(err, golibvirt.ErrOperationInvalid)) {
		err = nil // not running any more
	}
	if err == nil {
		// virDomainDestroy returns once QEMU is gone; the STOPPED event may still be on its way.
		m.end(nil)
	} else if !m.conn.IsConnected() {
		m.end(nil) // libvirtd destroys it with the connection
		err = nil
	}
	return err
}

// end marks the domain as gone, with cause as the reason if it stopped unbidden, and starts the
// teardown.
func (m *Machine) end(cause error) {
	m.endOnce.Do(func() {
		m.mu.Lock()
		if cause != nil && !m.stopping && m.reason == nil {
			m.reason = cause
		}
		m.mu.Unlock()
		close(m.ended)
		go m.teardown()
	})
}

// teardown brings the guest's writes home and removes what the machine put in the pool. It runs
// with a fresh context: whatever ended the machine (a cancelled build included), the disks must
// come back and the volumes go.
func (m *Machine) teardown() {
	ctx := context.Background()
	select {
	case <-m.consoleDone: // the pty closed: every byte the guest wrote is in the log
	case <-time.After(3 * time.Second):
	}
	m.consoleConn.close()
	if err := m.console.Close(); err != nil {
		m.log.Warn("the console log is incomplete", "path", m.console.Path(), "err", err)
	}
	m.cancelEvents()
	if m.tunnel != nil {
		m.tunnel.close()
	}

	var errs []error
	c := m.conn
	if !c.IsConnected() {
		var err error
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		c, err = m.driver.connector.connect(rctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("copy the disks back and delete the volumes of %s: %w", m.name, err))
			c = nil
		}
	}
	if c != nil {
		started := time.Now()
		var got int64
		for _, v := range m.vols {
			if !v.writable {
				continue
			}
			st, err := download(ctx, m.driver.connector, v.vol, v.local)
			if err != nil {
				errs = append(errs, fmt.Errorf("copy the guest's disk back: %w; the local file %s is as it was before the machine started", err, v.local))
				continue
			}
			got += st.bytes
			m.log.Debug("downloaded", "volume", v.vol.Name, "file", v.local, "transfer", st.String())
		}
		m.mu.Lock()
		m.downloaded = transferStats{bytes: got, elapsed: time.Since(started)}
		m.mu.Unlock()
		if got > 0 {
			m.log.Info("copied the machine's disks back from the storage pool", "transfer", m.downloaded.String())
		}
		for _, v := range m.vols {
			if err := deleteVolume(c, v.vol); err != nil {
				errs = append(errs, err)
			}
		}
		if err := m.deleteNVRAM(ctx, c); err != nil {
			errs = append(errs, err)
		}
		if err := c.close(); err != nil {
			m.log.Debug("disconnect", "err", err)
		}
		if c != m.conn {
			_ = m.conn.raw.Close()
		}
	}

	m.mu.Lock()
	m.teardownErr = errors.Join(errs...)
	m.err = errors.Join(m.reason, m.teardownErr)
	m.mu.Unlock()
	close(m.done)
}

// deleteNVRAM deletes the variable store libvirt created in the pool: it is a file libvirt made,
// not a volume ingot created, so the pool must be rescanned before the volume can be named.
func (m *Machine) deleteNVRAM(ctx context.Context, c *conn) error {
	if m.nvram == "" {
		return nil
	}
	p := m.driver.pool
	if err := p.refresh(ctx, c); err != nil {
		return fmt.Errorf("delete the UEFI variable store %s: %w", m.nvram, err)
	}
	vol, err := c.StorageVolLookupByName(p.ref, m.nvram)
	if isCode(err, golibvirt.ErrNoStorageVol) {
		return nil // the domain never started far enough to make it
	}
	if err != nil {
		return fmt.Errorf("delete the UEFI variable store %s: %w", m.nvram, err)
	}
	return deleteVolume(c, vol)
}

func (m *Machine) setStopping() {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
}

// stoppedErr is what typing into or waiting on a machine that ended says.
func (m *Machine) stoppedErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reason != nil {
		return fmt.Errorf("the guest stopped: %w", m.reason)
	}
	return errors.New("the guest stopped")
}

// Wait waits until the machine has ended (its disks are back) and returns Err.
func (m *Machine) Wait(ctx context.Context) error {
	select {
	case <-m.done:
		return m.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill destroys the domain at once, then copies the writable disks back and deletes the volumes
// before it returns: after Kill the local files hold what the guest wrote (consistent at the block
// level; the guest's filesystems were not unmounted). Safe to call more than once and after the
// machine ended. Its error is a failure to destroy or to clean up.
//
// go-libvirt calls take no context, so ctx bounds Kill from outside: if the daemon has not
// destroyed the domain when ctx ends, the machine's connection is closed under the call, and
// libvirtd destroys the domain with it (it was started with VIR_DOMAIN_START_AUTODESTROY); if the
// teardown is still copying disks back when ctx ends, it goes on in the background and Kill
// returns. Either way Kill then returns ctx's error.
func (m *Machine) Kill(ctx context.Context) error {
	m.setStopping()
	var err error
	select {
	case <-m.ended:
	default:
		err = m.destroyWithin(ctx)
	}
	return m.waitTeardown(ctx, err)
}

// destroyWithin is destroy, bounded by ctx: when ctx ends first, the machine's connection is
// closed under the call (which ends it) and the machine ends without the daemon's answer.
func (m *Machine) destroyWithin(ctx context.Context) error {
	destroyed := make(chan error, 1)
	go func() { destroyed <- m.destroy() }()
	var err error
	select {
	case err = <-destroyed:
	case <-ctx.Done():
		select {
		case err = <-destroyed: // answered as ctx ended: the connection is still good
		default:
			m.conn.raw.Close()
			m.end(nil)
			return fmt.Errorf("destroy domain %s: no answer from libvirtd (%w); closed the connection, with which libvirtd destroys the domain", m.name, ctx.Err())
		}
	}
	if err != nil {
		m.end(nil) // the connection closes in teardown, and libvirtd destroys it then
		return fmt.Errorf("destroy domain %s: %w", m.name, err)
	}
	return nil
}

// Shutdown powers the guest off: the ACPI power button (virDomainShutdownFlags with
// VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN), a wait bounded by the driver's shutdown timeout and ctx,
// then virDomainDestroyFlags with VIR_DOMAIN_DESTROY_GRACEFUL (SIGTERM: QEMU flushes its block
// layer), then a plain destroy. It returns when the disks are back; ErrForced (wrapped) if the
// guest did not stop by itself.
func (m *Machine) Shutdown(ctx context.Context) error {
	select {
	case <-m.ended:
		return m.waitTeardown(ctx, nil)
	default:
	}
	m.setStopping()
	grace, cancel := context.WithTimeout(ctx, m.driver.opts.ShutdownTimeout)
	defer cancel()
	started := time.Now()
	if err := m.conn.DomainShutdownFlags(m.dom, golibvirt.DomainShutdownAcpiPowerBtn); err != nil {
		m.log.Warn("ACPI power-off request failed; destroying the domain", "err", err)
	} else {
		select {
		case <-m.ended:
			m.log.Debug("guest powered off", "after", time.Since(started))
			return m.waitTeardown(ctx, nil)
		case <-grace.Done():
		}
	}
	forced := fmt.Errorf("%w within %s of the ACPI power button", hypervisor.ErrForced, time.Since(started).Round(time.Second))
	err := m.conn.DomainDestroyFlags(m.dom, golibvirt.DomainDestroyGraceful)
	switch {
	case err == nil || isCode(err, golibvirt.ErrNoDomain) || isCode(err, golibvirt.ErrOperationInvalid):
		m.end(nil)
		forced = fmt.Errorf("%w; libvirt stopped QEMU", forced)
	default:
		m.log.Debug("graceful destroy failed", "err", err)
		if derr := m.destroy(); derr != nil {
			return errors.Join(forced, fmt.Errorf("destroy domain %s: %w", m.name, derr), m.waitTeardown(ctx, nil))
		}
		forced = fmt.Errorf("%w; libvirt killed QEMU", forced)
	}
	return m.waitTeardown(ctx, forced)
}

// waitTeardown waits for the disks to come back and the volumes to go, and returns err joined
// with what went wrong there.
func (m *Machine) waitTeardown(ctx context.Context, err error) error {
	select {
	case <-m.done:
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("the guest stopped, but its disks are still being copied back: %w", ctx.Err()))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return errors.Join(err, m.teardownErr)
}

// drain reads a channel until it closes, in the background.
func drain[T any](ch <-chan T) {
	go func() {
		for range ch {
		}
	}()
}
