package libvirt

import (
	"fmt"

	"libvirt.org/go/libvirtxml"

	"github.com/ingot-build/ingot/hypervisor"
)

// layout is everything the domain XML depends on, resolved: the spec and where its files are on
// the libvirt host. domainXML is a pure function of it, so it is tested as data.
type layout struct {
	name  string
	virt  string          // domain type: "kvm" or "qemu" (TCG)
	spec  hypervisor.Spec // WithDefaults applied
	disks []diskFiles     // one per spec.Disks, in order
	// kernel and initrd are the pool paths of the uploaded direct-boot files.
	kernel, initrd string
	fw             firmwareLayout
}

// diskFiles is a spec disk's image and its backing chain on the libvirt host.
type diskFiles struct {
	path    string
	backing []image // nearest first; empty: the image has no backing file
}

// image is a file and its block format.
type image struct {
	path, format string
}

// firmwareLayout says how the firmware is loaded. Either loader (a file the firmware package
// chose on this host) or auto (libvirt's own firmware autoselection, for hosts whose files ingot
// cannot see) is set for UEFI; BIOS may leave both empty (libvirt's default SeaBIOS).
type firmwareLayout struct {
	loader     string // pflash code image, or a BIOS rom
	loaderType string // "pflash" or "rom"
	secure     bool   // loader secure='yes': only SMM code may write the variable store
	nvram      string // the build's variable store, a path in the pool
	template   string // what libvirt copies nvram from when it does not exist
	auto       bool   // <os firmware='efi'>
	secureBoot bool   // auto: want Secure Boot with enrolled keys
	smm        bool
}

// domainXML renders the domain. Choices worth knowing:
//   - on_crash preserve: a panicked guest stays (paused) until ingot has read its console and
//     destroys it; on_reboot destroy for NoReboot (libvirt passes -no-reboot).
//   - a pty serial console, which ingot reads through virDomainOpenConsole over the same
//     connection, so it works the same for a remote daemon.
//   - user-mode networking (slirp): no bridge, no dnsmasq, nothing on the host to configure; the
//     SSH forward is added at runtime over the monitor (see forward.go).
//   - pvpanic (<panic model='isa'/>), as the QEMU driver's -device pvpanic.
//   - a VGA adapter and no graphics: GRUB with gfxterm hangs without a display device.
//   - explicit backing chains (<backingStore>): the images' own backing file names point at the
//     client's paths, which do not exist on the libvirt host.
func domainXML(l layout) (string, error) {
	s := l.spec
	d := libvirtxml.Domain{
		Type:   l.virt,
		Name:   l.name,
		Memory: &libvirtxml.DomainMemory{Value: uint(s.MemoryMiB), Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: uint(s.CPUs)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: s.Arch, Machine: s.Machine, Type: "hvm"},
			Kernel:  l.kernel,
			Initrd:  l.initrd,
			Cmdline: s.Append,
		},
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		Clock:      &libvirtxml.DomainClock{Offset: "utc"},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "preserve",
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if l.virt == "kvm" {
		d.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough", Check: "none"}
	} else {
		// "maximum" (libvirt ≥ 7.1) is QEMU's -cpu max: every feature TCG can emulate.
		d.CPU = &libvirtxml.DomainCPU{Mode: "maximum", Check: "none"}
	}
	if s.NoReboot {
		d.OnReboot = "destroy"
	}
	fw := l.fw
	switch {
	case fw.auto:
		d.OS.Firmware = "efi"
		enabled := map[bool]string{true: "yes", false: "no"}[fw.secureBoot]
		d.OS.FirmwareInfo = &libvirtxml.DomainOSFirmwareInfo{Features: []libvirtxml.DomainOSFirmwareFeature{
			{Enabled: enabled, Name: "enrolled-keys"},
			{Enabled: enabled, Name: "secure-boot"},
		}}
		d.OS.NVRam = &libvirtxml.DomainNVRam{NVRam: fw.nvram}
	case fw.loader != "":
		d.OS.Loader = &libvirtxml.DomainLoader{Path: fw.loader, Type: fw.loaderType}
		if fw.loaderType == "pflash" {
			d.OS.Loader.Readonly = "yes"
			if fw.secure {
				d.OS.Loader.Secure = "yes"
			}
		}
		if fw.nvram != "" {
			d.OS.NVRam = &libvirtxml.DomainNVRam{NVRam: fw.nvram, Template: fw.template}
		}
	}
	if fw.smm {
		d.Features.SMM = &libvirtxml.DomainFeatureSMM{State: "on"}
	}

	disks, controllers, err := diskElements(s, l.disks)
	if err != nil {
		return "", err
	}
	port := uint(0)
	dev := d.Devices
	dev.Disks = disks
	dev.Controllers = append(controllers,
		// No USB: the QEMU driver has none either, and nothing ingot does needs it.
		libvirtxml.DomainController{Type: "usb", Model: "none"})
	dev.Interfaces = []libvirtxml.DomainInterface{{
		Source: &libvirtxml.DomainInterfaceSource{User: &libvirtxml.DomainInterfaceSourceUser{}},
		Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
	}}
	dev.Serials = []libvirtxml.DomainSerial{{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainSerialTarget{Port: &port},
	}}
	dev.Consoles = []libvirtxml.DomainConsole{{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port},
	}}
	dev.Panics = []libvirtxml.DomainPanic{{Model: "isa"}}
	dev.Videos = []libvirtxml.DomainVideo{{Model: libvirtxml.DomainVideoModel{Type: "vga"}}}
	dev.MemBalloon = &libvirtxml.DomainMemBalloon{Model: "none"}
	if len(s.ExtraArgs) > 0 {
		cl := &libvirtxml.DomainQEMUCommandline{}
		for _, a := range s.ExtraArgs {
			cl.Args = append(cl.Args, libvirtxml.DomainQEMUCommandlineArg{Value: a})
		}
		d.QEMUCommandline = cl
	}
	out, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("domain XML: %w", err)
	}
	return out, nil
}

// diskElements renders the spec's disks. Target names are what libvirt wants per bus (vdX for
// virtio; sdX shared by sata and scsi); the guest does not see them.
func diskElements(s hypervisor.Spec, files []diskFiles) ([]libvirtxml.DomainDisk, []libvirtxml.DomainController, error) {
	if len(files) != len(s.Disks) {
		return nil, nil, fmt.Errorf("domain XML: %d disks but %d disk files", len(s.Disks), len(files))
	}
	var out []libvirtxml.DomainDisk
	var controllers []libvirtxml.DomainController
	vd, sd, nvme := 0, 0, 0
	for i, sd0 := range s.Disks {
		f := files[i]
		disk := libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: sd0.Format},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: f.path}},
			Serial: sd0.Serial,
		}
		if sd0.CDROM {
			disk.Device = "cdrom"
		}
		if sd0.ReadOnly || sd0.CDROM {
			disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		}
		if sd0.Discard {
			disk.Driver.Discard = "unmap"
		}
		disk.Driver.DetectZeros = sd0.DetectZeroes
		disk.BackingStore = backingStore(f.backing)
		switch sd0.Interface {
		case "virtio":
			disk.Target = &libvirtxml.DomainDiskTarget{Dev: "vd" + driveLetters(vd), Bus: "virtio"}
			vd++
		case "sata", "scsi":
			disk.Target = &libvirtxml.DomainDiskTarget{Dev: "sd" + driveLetters(sd), Bus: sd0.Interface}
			sd++
		case "nvme":
			disk.Target = &libvirtxml.DomainDiskTarget{Dev: fmt.Sprintf("nvme0n%d", nvme+1), Bus: "nvme"}
			nvme++
		default:
			return nil, nil, fmt.Errorf("domain XML: disk %d (%s): interface %q", i, sd0.Path, sd0.Interface)
		}
		if sd0.BootIndex > 0 {
			disk.Boot = &libvirtxml.DomainDeviceBoot{Order: uint(sd0.BootIndex)}
		}
		out = append(out, disk)
	}
	for _, d := range s.Disks {
		if d.Interface == "scsi" {
			// One virtio-scsi controller for all scsi disks, as the QEMU driver's.
			controllers = append(controllers, libvirtxml.DomainController{Type: "scsi", Model: "virtio-scsi"})
			break
		}
	}
	return out, controllers, nil
}

// backingStore renders a backing chain, nearest first. The chain always ends in an empty
// <backingStore/>, which tells libvirt that the image has no (further) backing file, so it never
// opens an image to look for one.
func backingStore(chain []image) *libvirtxml.DomainDiskBackingStore {
	end := &libvirtxml.DomainDiskBackingStore{}
	for i := len(chain) - 1; i >= 0; i-- {
		end = &libvirtxml.DomainDiskBackingStore{
			Format:       &libvirtxml.DomainDiskFormat{Type: chain[i].format},
			Source:       &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: chain[i].path}},
			BackingStore: end,
		}
	}
	return end
}

// driveLetters numbers drives as a, b, …, z, aa, ab, … (libvirt's target names).
func driveLetters(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('a'+(i-1)%26)) + s
	}
	return s
}
