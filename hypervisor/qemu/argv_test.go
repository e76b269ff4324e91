package qemu

import (
	"context"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/internal/execx"
)

func TestArgv(t *testing.T) {
	spec := hypervisor.Spec{
		Name: "web", WorkDir: "/w", CPUs: 4, MemoryMiB: 4096, NoReboot: true,
		Kernel: "/k/vmlinuz", Initrd: "/k/initrd", Append: "console=ttyS0 autoinstall",
		Disks: []hypervisor.Disk{
			{Path: "/w/disk,1.qcow2", Format: "qcow2", Discard: true, DetectZeroes: "unmap", BootIndex: 1, Serial: "sys"},
			{Path: "/w/seed.iso", ReadOnly: true, Format: "raw"},
			{Path: "/c/installer.iso", CDROM: true, BootIndex: 2},
			{Path: "/c/x.iso", CDROM: true, Interface: "scsi"},
			{Path: "/w/n.raw", Format: "raw", Interface: "nvme"},
		},
		ExtraArgs: []string{"-device", "virtio-rng-pci"},
	}.WithDefaults()
	l := launch{spec: spec, accel: Accel{Name: hypervisor.AccelTCG, CPU: "max"}, firmware: []string{"-bios", "/fw/bios.bin"}, machineOpt: []string{"smm=on"}, qmpFD: 3}
	got := execx.Quote(l.argv())
	want := strings.Join([]string{
		"-name web,process=ingot-web -nodefaults -no-user-config -machine q35,smm=on -accel tcg -cpu max -smp 4 -m 4096M",
		"-display none -vga std -chardev socket,id=qmp,fd=3,server=on,wait=off -mon chardev=qmp,mode=control",
		"-chardev stdio,id=console,signal=off -serial chardev:console -device pvpanic -action panic=pause",
		"-netdev user,id=net0,hostfwd=tcp:127.0.0.1:0-:22 -device virtio-net-pci,netdev=net0 -bios /fw/bios.bin",
		"-drive if=none,id=drive0,file=/w/disk,,1.qcow2,format=qcow2,discard=unmap,detect-zeroes=unmap -device virtio-blk-pci,drive=drive0,bootindex=1,serial=sys",
		"-drive if=none,id=drive1,file=/w/seed.iso,format=raw,readonly=on -device virtio-blk-pci,drive=drive1",
		"-drive if=none,id=drive2,file=/c/installer.iso,format=raw,readonly=on,media=cdrom -device ide-cd,bus=ide.0,drive=drive2,bootindex=2",
		"-drive if=none,id=drive3,file=/c/x.iso,format=raw,readonly=on,media=cdrom -device virtio-scsi-pci,id=scsi0 -device scsi-cd,bus=scsi0.0,drive=drive3",
		"-drive if=none,id=drive4,file=/w/n.raw,format=raw -device nvme,serial=drive4,drive=drive4",
		"-kernel /k/vmlinuz -initrd /k/initrd -append 'console=ttyS0 autoinstall' -no-reboot -device virtio-rng-pci",
	}, " ")
	if got != want {
		t.Errorf("argv differs\n got: %s\nwant: %s", got, want)
	}
}

func TestUsernetForward(t *testing.T) {
	// Captured from QEMU 7.2's "info usernet".
	out := "Hub -1 (net0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n" +
		"  TCP[HOST_FORWARD]   8       127.0.0.1 45649       10.0.2.15    22     0     0\r\n" +
		"  TCP[ESTABLISHED]   12       10.0.2.15 40000   151.101.2.132    80     0     0\r\n"
	m := usernetForward.FindAllStringSubmatch(out, -1)
	if len(m) != 1 || m[0][1] != "45649" || m[0][2] != "22" {
		t.Errorf("matches %q", m)
	}
}

func TestFirstLine(t *testing.T) {
	in := "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.\n"
	if got := firstLine(in); got != "error: failed to set MSR 0x10a to 0x69" {
		t.Errorf("firstLine = %q", got)
	}
}

func TestParseVersion(t *testing.T) {
	b, err := parseVersion("/usr/bin/qemu-system-x86_64", []byte("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"))
	if err != nil || b.Version != "7.2.22" || b.Package != "Debian 1:7.2+dfsg-7+deb12u18+b3" {
		t.Errorf("parseVersion = %+v, %v", b, err)
	}
	if _, err := parseVersion("x", []byte("garbage")); err == nil {
		t.Error("no error for garbage")
	}
}

// An aarch64 machine: virt with GICv3, no VGA, the PCI pvpanic, and its CD-ROM on virtio-scsi
// (virt has no SATA controller).
func TestArgvAArch64(t *testing.T) {
	spec := hypervisor.Spec{
		Name: "edge", WorkDir: "/w", Arch: "aarch64",
		Disks: []hypervisor.Disk{
			{Path: "/w/disk.qcow2", Format: "qcow2", BootIndex: 1},
			{Path: "/c/installer.iso", CDROM: true},
		},
	}.WithDefaults()
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	fw := []string{"-drive", "if=pflash,format=raw,unit=0,file=/fw/AAVMF_CODE.fd,readonly=on", "-drive", "if=pflash,format=qcow2,unit=1,file=/w/vars.qcow2"}
	l := launch{spec: spec, accel: Accel{Name: hypervisor.AccelTCG, CPU: tcgCPU("aarch64")}, firmware: fw, qmpFD: 3}
	got := execx.Quote(l.argv())
	want := strings.Join([]string{
		"-name edge,process=ingot-edge -nodefaults -no-user-config -machine virt,gic-version=max -accel tcg -cpu max,pauth-impdef=on -smp 2 -m 2048M",
		"-display none -chardev socket,id=qmp,fd=3,server=on,wait=off -mon chardev=qmp,mode=control",
		"-chardev stdio,id=console,signal=off -serial chardev:console -device pvpanic-pci -action panic=pause",
		"-netdev user,id=net0,hostfwd=tcp:127.0.0.1:0-:22 -device virtio-net-pci,netdev=net0",
		"-drive if=pflash,format=raw,unit=0,file=/fw/AAVMF_CODE.fd,readonly=on -drive if=pflash,format=qcow2,unit=1,file=/w/vars.qcow2",
		"-drive if=none,id=drive0,file=/w/disk.qcow2,format=qcow2 -device virtio-blk-pci,drive=drive0,bootindex=1",
		"-drive if=none,id=drive1,file=/c/installer.iso,format=raw,readonly=on,media=cdrom -device virtio-scsi-pci,id=scsi0 -device scsi-cd,bus=scsi0.0,drive=drive1",
	}, " ")
	if got != want {
		t.Errorf("argv differs\n got: %s\nwant: %s", got, want)
	}
}

func TestChooseAccelForeignArch(t *testing.T) {
	foreign := map[string]string{"x86_64": "aarch64", "aarch64": "x86_64"}[hostArch()]
	if foreign == "" {
		t.Skipf("no foreign architecture defined for a %s host", hostArch())
	}
	a := ChooseAccel(context.Background(), "/nonexistent/qemu", foreign, hypervisor.AccelAuto)
	if a.Name != hypervisor.AccelTCG || !a.Fallback || !strings.Contains(a.Reason, "host's own architecture") {
		t.Errorf("ChooseAccel(%s) on %s = %+v; want a loud TCG fallback that says why", foreign, hostArch(), a)
	}
	if a.CPU != tcgCPU(foreign) {
		t.Errorf("cpu %q, want %q", a.CPU, tcgCPU(foreign))
	}
}
