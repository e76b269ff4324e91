// Package hypervisor defines what the bake pipeline needs from a virtual machine monitor: start a
// build machine from a Spec, reach its SSH port, watch it, type at it, and stop it. Drivers live in
// subpackages: qemu (QEMU as a child process, controlled over QMP) and libvirt (transient domains
// on a local or remote libvirtd). The Spec is plain data so both can honour it; what both need
// beyond it (parsing boot keys, the serial console log) is here too, once.
package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ingot-build/ingot/firmware"
)

// Spec is a build machine.
type Spec struct {
	Name string // a label for logs and process names; need not be unique
	// WorkDir is a private (0700) directory the caller owns and removes: the QMP socket, the
	// console log and the UEFI vars copy are made here.
	WorkDir   string
	Arch      string // x86_64 (default) or aarch64, as QEMU names them (qemu-system-ARCH)
	Machine   string // QEMU machine type; default q35 for x86_64, virt for aarch64
	CPUs      int    // default 2
	MemoryMiB int    // default 2048
	Accel     Accel  // AccelAuto (default), AccelKVM or AccelTCG
	Firmware  firmware.Kind

	Disks []Disk

	// Direct kernel boot (installers whose kernel and initrd were taken from the ISO).
	Kernel, Initrd, Append string

	// NoReboot turns a guest reboot into the machine's exit: an installer's final reboot then
	// says "install finished".
	NoReboot bool

	// GuestSSHPort is forwarded from an ephemeral loopback port; default 22.
	GuestSSHPort int

	// ExtraArgs are appended to the driver's command line as they are: the escape hatch.
	ExtraArgs []string

	// Incoming is a state file that Checkpointer.Checkpoint wrote: the machine starts from it,
	// where the checkpointed one was, instead of booting, and Start returns once the guest runs
	// again. The spec must describe the same machine (devices, memory, CPUs, firmware) as the one
	// checkpointed; its disks may be at other paths, holding what the checkpointed disks held
	// (a new overlay on a copy taken while Checkpoint left the guest paused). The SSH forward
	// gets a fresh port as usual. The guest's clock is behind by the time the machine spent
	// saved: the caller resyncs it. A missing or damaged file, or a spec that does not match
	// the saved machine, fails Start with the file's name and leaves no machine running. Only
	// a driver whose machines are Checkpointers honours it (the QEMU driver).
	Incoming string
}

// Disk is a drive attached to the machine.
type Disk struct {
	Path   string
	Format string // qcow2, raw, …
	// Interface: virtio (default for disks), scsi (virtio-scsi), sata (q35's AHCI; the default
	// for CD-ROMs on x86_64, as firmware and installers expect), nvme. aarch64's virt machine
	// has no SATA controller: its CD-ROMs default to scsi.
	Interface string
	CDROM     bool
	ReadOnly  bool
	// Discard passes the guest's TRIM/UNMAP down to the image file (discard=unmap), so deleted
	// data does not end up in the outputs.
	Discard bool
	// DetectZeroes: "", "on" or "unmap" (unmap needs Discard): zero writes become holes.
	DetectZeroes string
	BootIndex    int // 1 boots first; 0 leaves the disk out of the boot order
	Serial       string
}

// Driver starts machines.
type Driver interface {
	Start(ctx context.Context, spec Spec) (Machine, error)
}

// Machine is a running build machine.
type Machine interface {
	// SSHAddr is the loopback host:port forwarded to the guest's SSH port.
	SSHAddr() string
	// ConsolePath is the file the serial console is captured to. A driver that fails to write
	// it logs why (the file then ends early; ConsoleTail does not).
	ConsolePath() string
	// ConsoleTail returns the last n lines of the serial console.
	ConsoleTail(n int) string
	// Events returns the monitor events seen so far (SHUTDOWN, RESET, STOP, GUEST_PANICKED, …).
	Events() []Event
	// Done is closed when the guest stopped running: it powered off, panicked, or its
	// process ended. Err then says why.
	Done() <-chan struct{}
	// Err is nil while the guest runs and after a clean power-off; otherwise it is a
	// *GuestError carrying the console tail.
	Err() error
	// Shutdown powers the guest off in order: an ACPI power-button press, a bounded wait,
	// then a monitor quit, then a kill. It returns ErrForced (wrapped) if the guest did not
	// stop by itself.
	Shutdown(ctx context.Context) error
	// Wait waits for the machine to end and returns Err.
	Wait(ctx context.Context) error
	// Kill stops the machine at once. Safe to call more than once and after it ended. It
	// returns ctx's error (wrapped) if the machine is not gone when ctx ends: a cleanup given a
	// bounded context is bounded, whatever the hypervisor does.
	Kill(ctx context.Context) error
}

// KeySender is a machine that can type: boot commands for installers that must be driven
// through their boot menu.
type KeySender interface {
	SendKeys(ctx context.Context, sequence string) error
}

// Checkpointer is a machine whose whole state can be saved to a file and restored later in a new
// machine (Spec.Incoming). Optional, like KeySender; the libvirt driver does not implement it.
type Checkpointer interface {
	// Checkpoint pauses the guest and writes its RAM and device state, zstd-compressed, to
	// statePath (written to a temp name in the same dir, fsynced, renamed: never half-written
	// at statePath). It returns with the guest still paused and its disks flushed and released
	// (QEMU inactivates block devices when a migration completes), so that the caller can copy
	// the disk overlay consistently; Resume continues the same machine. On error the guest may
	// be paused too, and nothing is left at statePath: Resume goes on without the checkpoint.
	Checkpoint(ctx context.Context, statePath string) error
	// Resume continues a machine paused by Checkpoint (QMP cont, which re-activates its disks).
	Resume(ctx context.Context) error
}

// Restorer is a driver that can start machines from a state file (Spec.Incoming), so that a
// build asks before it relies on it: a driver that is not one (libvirt) refuses Spec.Incoming.
type Restorer interface{ CanRestore() bool }

// UntilStopped returns a copy of ctx that also ends when stopped closes, with why() as its cause
// (context.Cause). A KeySender types under it, so that a wait between keys ends as soon as the
// guest stops, with the reason rather than a timeout later.
func UntilStopped(ctx context.Context, stopped <-chan struct{}, why func() error) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-stopped:
			cancel(why())
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// Event is a monitor event.
type Event struct {
	Name string
	Time time.Time
	Data map[string]any
}

func (e Event) String() string {
	if len(e.Data) == 0 {
		return e.Name
	}
	return fmt.Sprintf("%s %v", e.Name, e.Data)
}

// ErrNotSupported is returned for an optional capability a driver does not have.
var ErrNotSupported = errors.New("not supported by this hypervisor driver")

// ErrForced means a shutdown had to be forced: the guest ignored the ACPI power button.
var ErrForced = errors.New("the guest did not power off by itself")

// GuestError is why a guest stopped when it should not have, with what its console said last.
type GuestError struct {
	Reason      string // "the guest panicked", "QEMU exited: exit status 1: …"
	ConsoleTail string
}

func (e *GuestError) Error() string {
	if strings.TrimSpace(e.ConsoleTail) == "" {
		return e.Reason + " (the serial console is empty)"
	}
	return e.Reason + "; the serial console ends with:\n" + indent(e.ConsoleTail)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// DefaultMachine is the QEMU machine type a guest of arch runs on: q35 for x86_64 (PCIe, AHCI,
// what OVMF and SeaBIOS both boot), virt for aarch64 (the machine AAVMF and Arm's SystemReady
// VM profile are made for).
func DefaultMachine(arch string) string {
	if arch == "aarch64" {
		return "virt"
	}
	return "q35"
}

// WithDefaults fills in the defaults documented on Spec.
func (s Spec) WithDefaults() Spec {
	if s.Arch == "" {
		s.Arch = "x86_64"
	}
	if s.Machine == "" {
		s.Machine = DefaultMachine(s.Arch)
	}
	if s.CPUs == 0 {
		s.CPUs = 2
	}
	if s.MemoryMiB == 0 {
		s.MemoryMiB = 2048
	}
	if s.Accel == "" {
		s.Accel = AccelAuto
	}
	if s.Firmware == "" {
		s.Firmware = firmware.BIOS
	}
	if s.GuestSSHPort == 0 {
		s.GuestSSHPort = 22
	}
	for i := range s.Disks {
		d := &s.Disks[i]
		if d.Interface == "" {
			d.Interface = "virtio"
			if d.CDROM {
				d.Interface = "sata"
				if s.Arch != "x86_64" {
					d.Interface = "scsi"
				}
			}
		}
		if d.Format == "" && d.CDROM {
			d.Format = "raw"
		}
	}
	return s
}

// Validate reports what is wrong with a spec (after WithDefaults), all at once.
func (s Spec) Validate() error {
	var errs []error
	if s.WorkDir == "" {
		errs = append(errs, errors.New("no work directory"))
	}
	switch s.Arch {
	case "x86_64", "aarch64":
	default:
		errs = append(errs, fmt.Errorf("arch %q: want x86_64 or aarch64", s.Arch))
	}
	if s.CPUs < 1 {
		errs = append(errs, fmt.Errorf("cpus %d: need at least 1", s.CPUs))
	}
	if s.MemoryMiB < 64 {
		errs = append(errs, fmt.Errorf("memory %d MiB: need at least 64 MiB", s.MemoryMiB))
	}
	if _, err := ParseAccel(string(s.Accel)); err != nil {
		errs = append(errs, fmt.Errorf("accel %w", err))
	}
	if s.Initrd != "" && s.Kernel == "" || s.Append != "" && s.Kernel == "" {
		errs = append(errs, errors.New("initrd or append given without a kernel"))
	}
	for i, d := range s.Disks {
		if d.Path == "" {
			errs = append(errs, fmt.Errorf("disk %d: no path", i))
		}
		if d.Format == "" {
			errs = append(errs, fmt.Errorf("disk %d (%s): no format", i, d.Path))
		}
		switch d.Interface {
		case "virtio", "scsi", "sata", "nvme":
		default:
			errs = append(errs, fmt.Errorf("disk %d (%s): interface %q: want virtio, scsi, sata or nvme", i, d.Path, d.Interface))
		}
		if d.Interface == "sata" && s.Arch != "x86_64" {
			errs = append(errs, fmt.Errorf("disk %d (%s): a %s machine has no SATA controller; use scsi or virtio", i, d.Path, s.Arch))
		}
		if d.CDROM && (d.Interface == "virtio" || d.Interface == "nvme") {
			errs = append(errs, fmt.Errorf("disk %d (%s): a CD-ROM needs the sata or scsi interface", i, d.Path))
		}
		switch d.DetectZeroes {
		case "", "on", "off":
		case "unmap":
			if !d.Discard {
				errs = append(errs, fmt.Errorf("disk %d (%s): detect-zeroes=unmap needs discard", i, d.Path))
			}
		default:
			errs = append(errs, fmt.Errorf("disk %d (%s): detect-zeroes %q: want on, off or unmap", i, d.Path, d.DetectZeroes))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("machine spec: %w", err)
	}
	return nil
}
