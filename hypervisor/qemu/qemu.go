// Package qemu runs build machines as QEMU child processes and controls them over QMP (go-qemu).
//
// Why a child process and not libvirt by default: a build machine lives for minutes, belongs to
// one ingot process and must die with it; a child in its own process group with a parent-death
// signal gives exactly that with nothing to install or configure. The libvirt driver exists for
// hosts that are managed through libvirt.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/internal/execx"
)

// Driver starts QEMU machines.
type Driver struct {
	logger          *slog.Logger
	finder          *firmware.Finder
	shutdownTimeout time.Duration
	keyInterval     time.Duration

	accelMu   sync.Mutex // the KVM probe runs once per Driver and architecture, not per machine
	autoAccel map[string]Accel

	binMu sync.Mutex // qemu-system-* lookups (an exec each) are done once per Driver
	bins  map[string]Binary
}

// Option configures a Driver.
type Option func(*Driver)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(d *Driver) { d.logger = l } }

// WithShutdownTimeout bounds how long Shutdown waits for the guest to power off after the ACPI
// power button before it quits QEMU (default 2 minutes; a context deadline also bounds it).
func WithShutdownTimeout(t time.Duration) Option { return func(d *Driver) { d.shutdownTimeout = t } }

// WithKeyInterval sets the pause between typed keys (default 100 ms, as Packer's).
func WithKeyInterval(t time.Duration) Option { return func(d *Driver) { d.keyInterval = t } }

// New returns a QEMU driver.
func New(opts ...Option) *Driver {
	d := &Driver{
		logger:          slog.New(slog.DiscardHandler),
		finder:          firmware.NewFinder(),
		shutdownTimeout: 2 * time.Minute,
		keyInterval:     100 * time.Millisecond,
	}
	for _, o := range opts {
		o(d)
	}
	return d
}

var _ hypervisor.Driver = (*Driver)(nil)

// Start starts a machine and returns once QMP is up and the SSH forward's port is known. The
// machine then boots on its own; the caller waits for SSH. A machine restored from a checkpoint
// (Spec.Incoming) is returned once its guest runs again (restore.go).
func (d *Driver) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	m, err := d.start(ctx, spec)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// CanRestore reports that this driver starts machines from checkpoints (Spec.Incoming): it
// always does; bake/checkpoint.go asks drivers this before it uses checkpoints.
func (d *Driver) CanRestore() bool { return true }

func (d *Driver) start(ctx context.Context, spec hypervisor.Spec) (*Machine, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(spec.WorkDir); err != nil {
		return nil, fmt.Errorf("start machine: work dir: %w", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("start machine: work dir %s is %v; it must be private (0700): it holds the monitor socket and firmware state", spec.WorkDir, fi.Mode().Perm())
	}
	var incoming *os.File
	if spec.Incoming != "" {
		// Before anything starts: a missing or foreign state file starts no QEMU.
		f, err := openState(spec.Incoming)
		if err != nil {
			return nil, fmt.Errorf("start machine: %w", err)
		}
		incoming = f
		defer incoming.Close()
	}
	bin, err := d.binary(ctx, spec.Arch)
	if err != nil {
		return nil, err
	}
	accel := d.accel(ctx, bin.Path, spec.Arch, spec.Accel)

	fw, err := d.finder.Select(spec.Firmware, spec.Arch, spec.Machine)
	if err != nil {
		return nil, fmt.Errorf("start machine: %w", err)
	}
	vars, err := firmware.PrepareVars(ctx, fw, spec.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("start machine: %w", err)
	}
	fwArgs, err := fw.Args(vars)
	if err != nil {
		return nil, fmt.Errorf("start machine: %w", err)
	}

	qmpPath, err := socketPath(spec.WorkDir, "qmp.sock")
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: qmpPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("start machine: QMP socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	lnFile, err := ln.File()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("start machine: QMP socket: %w", err)
	}
	l := launch{spec: spec, accel: accel, firmware: fwArgs, machineOpt: fw.MachineOptions(), qmpFD: 3}
	argv := l.argv()

	cmd := exec.Command(bin.Path, argv...)
	cmd.ExtraFiles = []*os.File{lnFile} // fd 3
	m := &Machine{
		driver:      d,
		spec:        spec,
		argv:        append([]string{bin.Path}, argv...),
		accel:       accel,
		firmware:    fw,
		done:        make(chan struct{}),
		procDone:    make(chan struct{}),
		consoleDone: make(chan struct{}),
		stderr:      execx.NewTail(8 << 10),
		log:         d.logger.With("machine", spec.Name),
	}
	cmd.Stderr = m.stderr
	started := time.Now()
	err = m.startProcess(cmd, filepath.Join(spec.WorkDir, "console.log"))
	lnFile.Close() // QEMU has its copy
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("start %s: %w", bin.Path, err)
	}
	m.log.Debug("qemu started", "pid", cmd.Process.Pid, "argv", m.CommandLine())
	go m.reap(ln)

	if err := m.connect(ctx, qmpPath); err != nil {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
		defer cancel()
		return nil, errors.Join(err, m.Kill(kctx))
	}
	m.log.Debug("qmp ready", "after", time.Since(started))
	if incoming != nil {
		if err := m.restore(ctx, incoming); err != nil {
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
			defer cancel()
			return nil, errors.Join(m.startError(fmt.Errorf("restore from %s: %w", spec.Incoming, err)), m.Kill(kctx))
		}
	}
	return m, nil
}

// startProcess starts QEMU as an owned child (execx.Start) with its serial console (stdout) going
// to the console log at path. Its stdout is a pipe of our own, not cmd.StdoutPipe: Wait closes
// that one as soon as QEMU exits, which can cut off the last lines (a panic's); ours is read to
// its end, when QEMU and everything it started are gone.
func (m *Machine) startProcess(cmd *exec.Cmd, path string) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("console pipe: %w", err)
	}
	if m.console, err = hypervisor.NewConsoleLog(path, m.onConsolePanic); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("console log: %w", err)
	}
	cmd.Stdout = pw
	m.wait, err = execx.Start(cmd)
	pw.Close() // QEMU has its copy: the pipe ends when QEMU does
	if err != nil {
		pr.Close()
		return errors.Join(err, m.console.Close())
	}
	m.cmd = cmd
	go func() {
		defer close(m.consoleDone)
		defer pr.Close()
		// ConsoleLog.Write never fails, so only reading can end the copy early.
		if _, err := io.Copy(m.console, pr); err != nil {
			m.log.Warn("reading the serial console failed; the console log ends early", "err", err)
		}
	}()
	return nil
}

func (d *Driver) binary(ctx context.Context, arch string) (Binary, error) {
	d.binMu.Lock()
	defer d.binMu.Unlock()
	if b, ok := d.bins[arch]; ok {
		return b, nil
	}
	b, err := FindBinary(ctx, arch)
	if err != nil {
		return Binary{}, err
	}
	if d.bins == nil {
		d.bins = map[string]Binary{}
	}
	d.bins[arch] = b
	return b, nil
}

// accel resolves the accelerator, probing KVM once per driver and architecture and warning once
// on fallback.
func (d *Driver) accel(ctx context.Context, bin, arch string, want hypervisor.Accel) Accel {
	if want != hypervisor.AccelAuto {
		return ChooseAccel(ctx, bin, arch, want)
	}
	d.accelMu.Lock()
	defer d.accelMu.Unlock()
	if a, ok := d.autoAccel[arch]; ok {
		return a
	}
	a := ChooseAccel(ctx, bin, arch, want)
	if a.Fallback {
		d.logger.Warn(a.Reason, "arch", arch)
	}
	if d.autoAccel == nil {
		d.autoAccel = map[string]Accel{}
	}
	d.autoAccel[arch] = a
	return a
}

// socketPath keeps a unix socket path under the 108-byte sun_path limit: a deep work dir gets a
// short private directory of its own for the socket.
func socketPath(workDir, name string) (string, error) {
	p := filepath.Join(workDir, name)
	if len(p) < 100 {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "ingot-")
	if err != nil {
		return "", fmt.Errorf("socket directory: %w", err)
	}
	return filepath.Join(dir, name), nil
}

var usernetForward = regexp.MustCompile(`TCP\[HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+\S+\s+(\d+)`)

// connect waits for QMP (no polling: the socket exists before QEMU starts) and reads back the
// port the kernel gave the SSH forward.
func (m *Machine) connect(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	mon, err := dialQMP(ctx, path, m.procDone, m.onEvent)
	if err != nil {
		return m.startError(err)
	}
	m.qmp = mon
	out, err := mon.hmp(ctx, "info usernet")
	if err != nil {
		return m.startError(fmt.Errorf("read the SSH forward: %w", err))
	}
	for _, match := range usernetForward.FindAllStringSubmatch(out, -1) {
		if match[2] == strconv.Itoa(m.spec.GuestSSHPort) {
			m.sshAddr = net.JoinHostPort("127.0.0.1", match[1])
		}
	}
	if m.sshAddr == "" {
		return m.startError(fmt.Errorf("read the SSH forward: no forward to port %d in %q", m.spec.GuestSSHPort, out))
	}
	return nil
}

func (m *Machine) startError(err error) error {
	select {
	case <-m.procDone:
		return fmt.Errorf("start machine: %w: QEMU exited (%v): %s\ncommand: %s", err, m.wait(), bytes.TrimSpace(m.stderr.Bytes()), m.CommandLine())
	default:
		return fmt.Errorf("start machine: %w\ncommand: %s", err, m.CommandLine())
	}
}
