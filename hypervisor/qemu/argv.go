package qemu

import (
	"fmt"
	"strings"

	"github.com/ingot-build/ingot/hypervisor"
)

// launch is everything the command line depends on, resolved: argv() is a pure function of it, so
// it is tested as data and a failing test prints a command a person can paste.
type launch struct {
	spec       hypervisor.Spec // WithDefaults applied
	accel      Accel
	firmware   []string // firmware arguments (firmware.Firmware.Args)
	machineOpt []string // extra -machine options (smm=on)
	qmpFD      int      // the listening QMP socket, passed to QEMU as this fd
}

// argv builds QEMU's arguments. Choices worth knowing:
//   - -nodefaults, then what a build needs added back explicitly, so the machine does not change
//     with QEMU's defaults; the VGA adapter stays (GRUB with gfxterm hangs without one) while
//     -display none shows nothing and nothing listens for a viewer.
//   - QMP on a listening socket ingot made and passes in (libvirt does the same): QEMU never has
//     to create it first, so there is no polling for the socket to appear.
//   - the serial console on QEMU's stdout, which ingot reads line by line (to a file, a tail
//     buffer and the panic detector).
//   - user-mode networking with the SSH forward bound to 127.0.0.1 port 0: the kernel picks a free
//     port at bind time, read back over QMP, so concurrent builds never collide.
//   - pvpanic with -action panic=pause (QEMU ≥ 6.0): a kernel panic becomes a GUEST_PANICKED
//     event, and the guest stays for its console to be read.
//   - aarch64 runs on virt with gic-version=max (GICv3 under TCG and on most KVM hosts, so more
//     than eight vCPUs work), no VGA (AAVMF would put its console on a framebuffer no one reads,
//     instead of the serial port), and the PCI pvpanic device (virt has no ISA bus).
//   - a restore (Spec.Incoming) adds -incoming defer: QEMU builds the machine and waits for
//     migrate-incoming over QMP (restore.go), so the migration parameters and the stream's
//     source are given after QMP is up, not on the command line.
func (l launch) argv() []string {
	s := l.spec
	arm := s.Arch == "aarch64"
	machine := s.Machine
	if arm {
		machine += ",gic-version=max"
	}
	for _, o := range l.machineOpt {
		machine += "," + o
	}
	vga, pvpanic := []string{"-vga", "std"}, "pvpanic"
	if arm {
		vga, pvpanic = nil, "pvpanic-pci"
	}
	a := []string{
		"-name", s.Name + ",process=ingot-" + s.Name,
		"-nodefaults", "-no-user-config",
		"-machine", machine,
		"-accel", string(l.accel.Name),
		"-cpu", l.accel.CPU,
		"-smp", fmt.Sprint(s.CPUs),
		"-m", fmt.Sprintf("%dM", s.MemoryMiB),
		"-display", "none",
	}
	a = append(a, vga...)
	a = append(a,
		"-chardev", fmt.Sprintf("socket,id=qmp,fd=%d,server=on,wait=off", l.qmpFD),
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "stdio,id=console,signal=off",
		"-serial", "chardev:console",
		"-device", pvpanic,
		"-action", "panic=pause",
		"-netdev", fmt.Sprintf("user,id=net0,hostfwd=tcp:127.0.0.1:0-:%d", s.GuestSSHPort),
		"-device", "virtio-net-pci,netdev=net0",
	)
	a = append(a, l.firmware...)
	a = append(a, diskArgs(s)...)
	if s.Kernel != "" {
		a = append(a, "-kernel", s.Kernel)
		if s.Initrd != "" {
			a = append(a, "-initrd", s.Initrd)
		}
		if s.Append != "" {
			a = append(a, "-append", s.Append)
		}
	}
	if s.NoReboot {
		a = append(a, "-no-reboot")
	}
	if s.Incoming != "" {
		a = append(a, "-incoming", "defer")
	}
	return append(a, s.ExtraArgs...)
}

func diskArgs(s hypervisor.Spec) []string {
	var a []string
	scsi, sata := false, 0
	for i, d := range s.Disks {
		id := fmt.Sprintf("drive%d", i)
		drive := []string{"if=none", "id=" + id, "file=" + escapeComma(d.Path), "format=" + d.Format}
		if d.ReadOnly || d.CDROM {
			drive = append(drive, "readonly=on")
		}
		if d.CDROM {
			drive = append(drive, "media=cdrom")
		}
		if d.Discard {
			drive = append(drive, "discard=unmap")
		}
		if d.DetectZeroes != "" {
			drive = append(drive, "detect-zeroes="+d.DetectZeroes)
		}
		a = append(a, "-drive", strings.Join(drive, ","))

		var dev []string
		switch d.Interface {
		case "virtio":
			dev = []string{"virtio-blk-pci"}
		case "scsi":
			if !scsi {
				a = append(a, "-device", "virtio-scsi-pci,id=scsi0")
				scsi = true
			}
			dev = []string{map[bool]string{true: "scsi-cd", false: "scsi-hd"}[d.CDROM], "bus=scsi0.0"}
		case "sata":
			// q35's built-in AHCI controller has six ports, ide.0 to ide.5.
			dev = []string{map[bool]string{true: "ide-cd", false: "ide-hd"}[d.CDROM], fmt.Sprintf("bus=ide.%d", sata)}
			sata++
		case "nvme":
			serial := d.Serial
			if serial == "" {
				serial = id // nvme requires one
			}
			dev = []string{"nvme", "serial=" + escapeComma(serial)}
		}
		dev = append(dev, "drive="+id)
		if d.BootIndex > 0 {
			dev = append(dev, fmt.Sprintf("bootindex=%d", d.BootIndex))
		}
		if d.Serial != "" && d.Interface != "nvme" && d.Interface != "sata" {
			dev = append(dev, "serial="+escapeComma(d.Serial))
		}
		a = append(a, "-device", strings.Join(dev, ","))
	}
	return a
}

// escapeComma escapes a value inside QEMU's comma-separated options, where "," is written ",,".
func escapeComma(s string) string { return strings.ReplaceAll(s, ",", ",,") }
