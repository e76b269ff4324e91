package recipes

import (
	"fmt"
	"runtime"
	"strings"
)

// Limits on machine sizes: beyond them a value is a typo, not a plan.
const (
	minMemory = 128 * MiB // no current distribution boots in less
	maxMemory = TiB
	minDisk   = GiB
	maxDisk   = 64 * TiB // the largest VHDX; qcow2 allows more, but no output could hold it
	maxCPUs   = 256
)

// Architectures ingot builds guests of, as QEMU names them (qemu-system-ARCH).
const (
	ArchX86_64  = "x86_64"
	ArchAArch64 = "aarch64"
)

// archs lists machine.arch's values.
func archs() []string { return []string{ArchX86_64, ArchAArch64} }

// archAliases maps Debian's (and Go's) architecture names to QEMU's.
var archAliases = map[string]string{"amd64": ArchX86_64, "arm64": ArchAArch64}

// HostArch is the architecture of the machine ingot runs on, as machine.arch names it: the
// default, since it is the one KVM can accelerate. Hosts that are neither build x86_64 guests.
func HostArch() string {
	if runtime.GOARCH == "arm64" {
		return ArchAArch64
	}
	return ArchX86_64
}

// firmwareFor says why a firmware cannot boot a guest of arch, or "" if it can: aarch64's
// virt machine has UEFI (AAVMF) only.
func firmwareFor(arch, fw string) string {
	if arch == ArchAArch64 && fw == "bios" {
		return "aarch64 machines boot with UEFI only (QEMU's virt machine has no BIOS); use uefi"
	}
	return ""
}

// firmwareKinds lists the firmwares a machine boots under, as machine.firmware and
// test.firmware name them.
func firmwareKinds() []string { return []string{"bios", "uefi", "uefi-secure"} }

// machine reads machine:, the build machine, with its defaults; an ISO build gets a blank disk
// of DefaultISODisk unless it names a size.
func (d *decoder) machine(top *fields, src Source) Machine {
	m := Machine{Arch: HostArch(), CPUs: DefaultCPUs, MemoryMiB: DefaultMemoryMiB, Firmware: DefaultFirmware, Accel: "auto", Driver: "qemu", Pos: top.at}
	if f, ok := d.sub(top, "machine", yamlKeys[Machine]()); ok {
		d.machineFields(f, &m)
	}
	if m.DiskBytes == 0 && src.ISO != nil {
		m.DiskBytes = DefaultISODisk
	}
	return m
}

func (d *decoder) machineFields(f *fields, m *Machine) {
	m.Pos = f.at
	if n, ok := f.get("arch"); ok {
		p := f.child("arch")
		// Debian's and Go's names are the likely slip: say which QEMU name they mean.
		if v, ok := d.str(p, n); ok && archAliases[v] != "" {
			d.errorf(d.at(d.resolve(p, n)), p, fmt.Sprintf("write %s, QEMU's name for it", archAliases[v]), "%q is Debian's name for the architecture", v)
		} else if v, ok := d.enum(p, n, archs()...); ok {
			m.Arch = v
		}
	}
	if n, ok := f.get("cpus"); ok {
		if v, ok := d.integer(f.child("cpus"), n, 1, maxCPUs); ok {
			m.CPUs = int(v)
		}
	}
	if n, ok := f.get("memory"); ok {
		if v, ok := d.size(f.child("memory"), n, minMemory, maxMemory, MiB, "2GiB"); ok {
			m.MemoryMiB = int(v / MiB)
		}
	}
	if n, ok := f.get("disk"); ok {
		if v, ok := d.size(f.child("disk"), n, minDisk, maxDisk, MiB, "8GiB"); ok {
			m.DiskBytes = v
		}
	}
	if n, ok := f.get("firmware"); ok {
		p := f.child("firmware")
		if v, ok := d.enum(p, n, firmwareKinds()...); ok {
			m.Firmware = v
			if why := firmwareFor(m.Arch, v); why != "" {
				d.errorf(d.at(d.resolve(p, n)), p, why, "%q cannot boot an %s machine", v, m.Arch)
			}
		}
	}
	if n, ok := f.get("accel"); ok {
		m.Accel, _ = d.enum(f.child("accel"), n, "auto", "kvm", "tcg")
	}
	if n, ok := f.get("driver"); ok {
		m.Driver, _ = d.enum(f.child("driver"), n, "qemu", "libvirt")
	}
	if n, ok := f.get("qemu_args"); ok {
		p := f.child("qemu_args")
		items, _ := d.list(p, n)
		for i, item := range items {
			ip := fmt.Sprintf("%s[%d]", p, i)
			args, ok := d.strings(ip, item)
			switch {
			case !ok:
			case len(args) == 0:
				d.errorf(d.at(item), ip, `give an option and its value, e.g. ["-device", "virtio-rng-pci"]`, "is empty")
			case !strings.HasPrefix(args[0], "-"):
				d.errorf(d.at(item), ip, `each element is an option with its values, e.g. ["-device", "virtio-rng-pci"]`, "%q is not an option (options start with -)", args[0])
			default:
				m.QemuArgs = append(m.QemuArgs, args)
			}
		}
	}
}
