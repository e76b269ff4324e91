package firmware

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// VarsFormat is the format of the per-build variable store PrepareVars makes. qcow2 rather than
// the templates' raw, because QEMU's savevm refuses a VM with a writable raw pflash unit, and
// later steps snapshot the build VM.
const VarsFormat = "qcow2"

// Image is a firmware file and its QEMU block format.
type Image struct {
	Path   string `json:"path"`
	Format string `json:"format"`
}

// Firmware is the firmware chosen for one build. It is plain data, so that it can go into the
// build manifest as it is.
type Firmware struct {
	Kind        Kind   `json:"kind"`
	Description string `json:"description"`
	Device      Device `json:"device"`         // flash (UEFI) or memory (BIOS)
	Mode        Mode   `json:"mode,omitempty"` // flash only
	// Executable is the firmware code: the -bios image, or pflash unit 0.
	Executable Image `json:"executable"`
	// VarsTemplate is the pristine UEFI variable store that PrepareVars copies; set for split flash.
	VarsTemplate Image    `json:"vars_template,omitzero"`
	Features     []string `json:"features,omitempty"`
	// SecureBoot is true when Secure Boot is enforced from the first boot (keys enrolled).
	SecureBoot bool `json:"secure_boot"`
	// RequiresSMM means the machine must emulate SMM; see MachineOptions.
	RequiresSMM bool `json:"requires_smm"`
	// Descriptor is the descriptor file this came from; empty for QEMU's default SeaBIOS.
	Descriptor string `json:"descriptor,omitempty"`
}

func fromDescriptor(kind Kind, d Descriptor) Firmware {
	m := d.Mapping
	fw := Firmware{
		Kind:        kind,
		Description: d.Description,
		Device:      m.Device,
		Features:    slices.Clone(d.Features),
		SecureBoot:  d.Has(FeatureSecureBoot) && d.Has(FeatureEnrolledKeys),
		RequiresSMM: d.Has(FeatureRequiresSMM),
		Descriptor:  d.Path,
	}
	if m.Device == DeviceFlash {
		fw.Mode = m.Mode
		fw.Executable = Image{Path: m.Executable.Filename, Format: m.Executable.Format}
		if m.Mode == ModeSplit {
			fw.VarsTemplate = Image{Path: m.NVRAMTemplate.Filename, Format: m.NVRAMTemplate.Format}
		}
	} else {
		// firmware.json gives no format for memory mappings: "-bios" takes a plain image.
		fw.Executable = Image{Path: m.Filename, Format: "raw"}
	}
	return fw
}

// NeedsVars reports whether the firmware needs a per-build writable image from PrepareVars.
func (fw Firmware) NeedsVars() bool {
	return fw.Device == DeviceFlash && (fw.Mode == ModeSplit || fw.Mode == ModeCombined)
}

// MachineOptions are the properties the -machine option must carry for this firmware
// ("smm=on" for firmware that requires SMM; "graphics=off" for SeaBIOS, which then mirrors its
// screen to the serial console, so that "Boot failed: not a bootable disk" reaches the console
// log as OVMF's messages do). They are separate from Args because the hypervisor owns -machine
// and builds it in one piece (type, accel, these).
func (fw Firmware) MachineOptions() []string {
	var opts []string
	if fw.RequiresSMM {
		opts = append(opts, "smm=on")
	}
	if fw.Device == DeviceMemory {
		opts = append(opts, "graphics=off")
	}
	return opts
}

// Args renders the QEMU arguments that load the firmware, as an argv fragment. vars is the file
// PrepareVars made (format VarsFormat); it is ignored by firmware that keeps no variables and
// required by firmware that does.
//
// Split flash gives two units: the shared code read-only, the build's own variables writable.
// Firmware that is both secure-boot and requires-smm also gets the pflash "secure" property, which
// lets only SMM code write the variable store (firmware.json, requires-smm). The older
// -drive if=pflash form is used rather than -blockdev + -machine pflash0=: it is what QEMU 7.2
// and its successors all accept, and it keeps -machine to MachineOptions.
func (fw Firmware) Args(vars string) ([]string, error) {
	if fw.Executable.Path == "" {
		return nil, errors.New("firmware arguments: no firmware executable (use Finder.Select)")
	}
	var args []string
	switch fw.Device {
	case DeviceMemory:
		return []string{"-bios", fw.Executable.Path}, nil
	case DeviceFlash:
	default:
		return nil, fmt.Errorf("firmware arguments: cannot load firmware mapped as %q", fw.Device)
	}
	if fw.NeedsVars() && vars == "" {
		return nil, fmt.Errorf("firmware arguments: %s firmware needs its per-build copy (PrepareVars)", fw.Mode)
	}
	switch fw.Mode {
	case ModeSplit:
		args = append(args,
			"-drive", pflash(0, fw.Executable.Format, fw.Executable.Path, true),
			"-drive", pflash(1, VarsFormat, vars, false))
	case ModeCombined:
		args = append(args, "-drive", pflash(0, VarsFormat, vars, false))
	case ModeStateless:
		args = append(args, "-drive", pflash(0, fw.Executable.Format, fw.Executable.Path, true))
	default:
		return nil, fmt.Errorf("firmware arguments: unknown flash mode %q", fw.Mode)
	}
	if fw.RequiresSMM && slices.Contains(fw.Features, FeatureSecureBoot) {
		args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on")
	}
	return args, nil
}

func pflash(unit int, format, file string, readonly bool) string {
	// QEMU's option syntax splits on ',' and reads ",," as a literal comma.
	s := fmt.Sprintf("if=pflash,format=%s,unit=%d,file=%s", format, unit, strings.ReplaceAll(file, ",", ",,"))
	if readonly {
		s += ",readonly=on"
	}
	return s
}
