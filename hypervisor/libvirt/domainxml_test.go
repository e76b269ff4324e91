package libvirt

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/hypervisor"
)

var update = flag.Bool("update", false, "rewrite the golden domain XML files in testdata/")

// fullLayout exercises every disk option, direct kernel boot, NoReboot, UEFI from the firmware
// package and the escape hatch.
func fullLayout() layout {
	spec := hypervisor.Spec{
		Name: "web", WorkDir: "/w", CPUs: 4, MemoryMiB: 4096, NoReboot: true,
		Kernel: "/k/vmlinuz", Initrd: "/k/initrd", Append: "console=ttyS0 autoinstall",
		Disks: []hypervisor.Disk{
			{Path: "/w/disk.qcow2", Format: "qcow2", Discard: true, DetectZeroes: "unmap", BootIndex: 1, Serial: "sys"},
			{Path: "/w/seed.iso", ReadOnly: true, Format: "raw"},
			{Path: "/c/installer.iso", CDROM: true, BootIndex: 2},
			{Path: "/c/x.iso", CDROM: true, Interface: "scsi"},
			{Path: "/w/data.raw", Format: "raw", Interface: "sata", DetectZeroes: "on"},
		},
		ExtraArgs: []string{"-device", "virtio-rng-pci"},
	}.WithDefaults()
	pool := "/var/lib/libvirt/images/ingot/ingot-web-0a1b2c3d"
	return layout{
		name: "ingot-web-0a1b2c3d", virt: "qemu", spec: spec,
		disks: []diskFiles{
			{path: pool + "-d0.qcow2", backing: []image{{path: pool + "-d0-b1.qcow2", format: "qcow2"}, {path: pool + "-d0-b2.img", format: "raw"}}},
			{path: pool + "-d1.img"},
			{path: pool + "-d2.img"},
			{path: pool + "-d3.img"},
			{path: pool + "-d4.img"},
		},
		kernel: pool + "-kernel", initrd: pool + "-initrd",
		fw: firmwareLayout{loader: "/usr/share/OVMF/OVMF_CODE_4M.fd", loaderType: "pflash", nvram: pool + "-VARS.fd", template: "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	}
}

// The whole document for the full layout, compared with a golden file a person can read (and
// paste into virsh create). Run with -update after a deliberate change.
func TestDomainXMLGolden(t *testing.T) {
	got, err := domainXML(fullLayout())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "full.xml")
	if *update {
		if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got+"\n" != string(want) {
		t.Errorf("domain XML differs from %s (go test -run TestDomainXMLGolden -update rewrites it):\n%s", golden, got)
	}
}

// Each choice shows up in the XML as it should, and what should not be there is not.
func TestDomainXML(t *testing.T) {
	bios := layout{name: "ingot-m-00000000", virt: "qemu", spec: hypervisor.Spec{Name: "m", WorkDir: "/w"}.WithDefaults()}
	with := func(f func(*layout)) layout {
		l := bios
		l.spec.Disks = append([]hypervisor.Disk(nil), bios.spec.Disks...)
		f(&l)
		return l
	}
	for _, tc := range []struct {
		name      string
		layout    layout
		want, not []string
	}{
		{
			name:   "bios defaults",
			layout: bios,
			want: []string{
				`<domain type="qemu">`, `<name>ingot-m-00000000</name>`, `<memory unit="MiB">2048</memory>`, `<vcpu>2</vcpu>`,
				`<type arch="x86_64" machine="q35">hvm</type>`, `<cpu mode="maximum" check="none"></cpu>`,
				`<on_poweroff>destroy</on_poweroff>`, `<on_reboot>restart</on_reboot>`, `<on_crash>preserve</on_crash>`,
				`<interface type="user">`, `<model type="virtio"></model>`,
				`<serial type="pty">`, `<console type="pty">`, `<target type="serial" port="0"></target>`,
				`<panic model="isa">`, `<model type="vga"></model>`, `<memballoon model="none">`,
				`<controller type="usb" model="none">`, `<acpi></acpi>`,
			},
			not: []string{"<loader", "<nvram", "<smm", "<kernel>", "qemu:commandline", "<disk", "<graphics"},
		},
		{
			name:   "kvm",
			layout: with(func(l *layout) { l.virt = "kvm" }),
			want:   []string{`<domain type="kvm">`, `<cpu mode="host-passthrough" check="none">`},
		},
		{
			name:   "no reboot",
			layout: with(func(l *layout) { l.spec.NoReboot = true }),
			want:   []string{`<on_reboot>destroy</on_reboot>`},
		},
		{
			name: "uefi-secure chosen here",
			layout: with(func(l *layout) {
				l.fw = firmwareLayout{loader: "/usr/share/OVMF/OVMF_CODE_4M.ms.fd", loaderType: "pflash", secure: true, smm: true,
					nvram: "/p/ingot-m-00000000-VARS.fd", template: "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"}
			}),
			want: []string{
				`<loader readonly="yes" secure="yes" type="pflash">/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>`,
				`<nvram template="/usr/share/OVMF/OVMF_VARS_4M.ms.fd">/p/ingot-m-00000000-VARS.fd</nvram>`,
				`<smm state="on"></smm>`,
			},
		},
		{
			name:   "uefi chosen by a remote libvirt",
			layout: with(func(l *layout) { l.fw = firmwareLayout{auto: true, nvram: "/p/ingot-m-00000000-VARS.fd"} }),
			want: []string{
				`<os firmware="efi">`, `<feature enabled="no" name="enrolled-keys"></feature>`, `<feature enabled="no" name="secure-boot"></feature>`,
				`<nvram>/p/ingot-m-00000000-VARS.fd</nvram>`,
			},
			not: []string{"<loader", "<smm"},
		},
		{
			name:   "uefi-secure chosen by a remote libvirt",
			layout: with(func(l *layout) { l.fw = firmwareLayout{auto: true, secureBoot: true, smm: true, nvram: "/p/v.fd"} }),
			want:   []string{`<feature enabled="yes" name="secure-boot"></feature>`, `<feature enabled="yes" name="enrolled-keys"></feature>`, `<smm state="on"></smm>`},
		},
		{
			name:   "bios rom from a descriptor",
			layout: with(func(l *layout) { l.fw = firmwareLayout{loader: "/usr/share/seabios/bios-256k.bin", loaderType: "rom"} }),
			want:   []string{`<loader type="rom">/usr/share/seabios/bios-256k.bin</loader>`},
			not:    []string{"readonly", "<nvram"},
		},
		{
			name: "disk with a chain",
			layout: with(func(l *layout) {
				l.spec.Disks = []hypervisor.Disk{{Path: "/w/d.qcow2", Format: "qcow2", Interface: "virtio", Discard: true, DetectZeroes: "unmap", BootIndex: 1}}
				l.disks = []diskFiles{{path: "/p/d0.qcow2", backing: []image{{path: "/p/d0-b1.qcow2", format: "qcow2"}}}}
			}),
			want: []string{
				`<disk type="file" device="disk">`,
				`<driver name="qemu" type="qcow2" discard="unmap" detect_zeroes="unmap"></driver>`,
				`<source file="/p/d0.qcow2"></source>`,
				`<backingStore type="file"><format type="qcow2"></format><source file="/p/d0-b1.qcow2"></source><backingStore></backingStore></backingStore>`,
				`<target dev="vda" bus="virtio"></target>`, `<boot order="1"></boot>`,
			},
			not: []string{"<readonly", `controller type="scsi"`},
		},
		{
			name: "read-only raw disk ends its chain at once",
			layout: with(func(l *layout) {
				l.spec.Disks = []hypervisor.Disk{{Path: "/w/seed.iso", Format: "raw", Interface: "virtio", ReadOnly: true}}
				l.disks = []diskFiles{{path: "/p/d0.img"}}
			}),
			want: []string{`<readonly></readonly>`, `<backingStore></backingStore>`},
			not:  []string{"<boot", "discard"},
		},
		{
			name: "cdroms on sata and scsi share sd names; one virtio-scsi controller",
			layout: with(func(l *layout) {
				l.spec.Disks = []hypervisor.Disk{
					{Path: "/a.iso", Format: "raw", Interface: "sata", CDROM: true},
					{Path: "/b.iso", Format: "raw", Interface: "scsi", CDROM: true},
					{Path: "/c.raw", Format: "raw", Interface: "scsi", Serial: "data"},
				}
				l.disks = []diskFiles{{path: "/p/a"}, {path: "/p/b"}, {path: "/p/c"}}
			}),
			want: []string{
				`<disk type="file" device="cdrom">`, `<target dev="sda" bus="sata"></target>`, `<target dev="sdb" bus="scsi"></target>`,
				`<target dev="sdc" bus="scsi"></target>`, `<serial>data</serial>`, `<controller type="scsi" model="virtio-scsi">`,
			},
		},
		{
			name: "direct kernel boot and extra args",
			layout: with(func(l *layout) {
				l.spec.Kernel, l.spec.Initrd, l.spec.Append = "/k/vmlinuz", "/k/initrd", "console=ttyS0 quiet"
				l.kernel, l.initrd = "/p/m-kernel", "/p/m-initrd"
				l.spec.ExtraArgs = []string{"-device", "virtio-rng-pci"}
			}),
			want: []string{
				`<kernel>/p/m-kernel</kernel>`, `<initrd>/p/m-initrd</initrd>`, `<cmdline>console=ttyS0 quiet</cmdline>`,
				`<commandline xmlns="http://libvirt.org/schemas/domain/qemu/1.0"><arg value="-device"></arg><arg value="virtio-rng-pci"></arg></commandline>`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := domainXML(tc.layout)
			if err != nil {
				t.Fatal(err)
			}
			flat := flatten(got)
			for _, w := range tc.want {
				if !strings.Contains(flat, w) {
					t.Errorf("missing %s in\n%s", w, got)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(flat, n) {
					t.Errorf("unexpected %s in\n%s", n, got)
				}
			}
		})
	}
}

// flatten removes the indentation between elements, so fragments can span lines.
func flatten(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		b.WriteString(strings.TrimSpace(line))
	}
	return b.String()
}

func TestDomainXMLRefusesAMismatch(t *testing.T) {
	l := fullLayout()
	l.disks = l.disks[:2]
	if _, err := domainXML(l); err == nil {
		t.Error("domainXML accepted fewer disk files than disks")
	}
}

func TestDriveLetters(t *testing.T) {
	for i, want := range map[int]string{0: "a", 1: "b", 25: "z", 26: "aa", 27: "ab", 51: "az", 52: "ba", 701: "zz", 702: "aaa"} {
		if got := driveLetters(i); got != want {
			t.Errorf("driveLetters(%d) = %q, want %q", i, got, want)
		}
	}
}
