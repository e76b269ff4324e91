// Package firmware chooses the firmware a build guest boots with — SeaBIOS or OVMF (UEFI), with or
// without Secure Boot — and prepares the per-build UEFI variable store.
//
// Why descriptors rather than a list of well-known paths: distributions disagree on where OVMF lives
// and which of its builds is which (Debian: /usr/share/OVMF/OVMF_CODE_4M.ms.fd; Fedora:
// /usr/share/edk2/ovmf/OVMF_CODE_4M.secboot.qcow2, in qcow2). QEMU's firmware descriptors
// (docs/interop/firmware.json, the format libvirt and lima read too) say so in data, and a sysadmin
// can override or hide them. This package reads them the way that document prescribes, picks one
// per build, and renders the QEMU arguments for it as data; the hypervisor package runs QEMU.
package firmware

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Device is where a firmware is mapped (FirmwareDevice in firmware.json).
type Device string

// The devices of firmware.json. Only flash (OVMF) and memory (SeaBIOS) are ever selected: kernel
// mapping ("-kernel FILE") is for firmware such as OpenSBI that ingot does not boot.
const (
	DeviceFlash  Device = "flash"
	DeviceMemory Device = "memory"
	DeviceKernel Device = "kernel"
)

// Mode is how flash firmware keeps its code and variables apart (FirmwareFlashMode, since QEMU 7.0;
// an absent mode means split).
type Mode string

const (
	// ModeSplit: a read-only code image shared by every guest plus an NVRAM template that each
	// guest gets its own copy of.
	ModeSplit Mode = "split"
	// ModeCombined: code and variables in one image, which each guest gets its own copy of.
	ModeCombined Mode = "combined"
	// ModeStateless: code only; variables live in RAM and are lost at power-off.
	ModeStateless Mode = "stateless"
)

// Features of firmware.json that selection depends on. Descriptors carry others (acpi-s3, amd-sev,
// verbose-dynamic, …); they are kept as strings in Descriptor.Features.
const (
	FeatureSecureBoot   = "secure-boot"   // implements UEFI Secure Boot (not necessarily enforced)
	FeatureEnrolledKeys = "enrolled-keys" // the NVRAM template has keys enrolled: Secure Boot is on
	FeatureRequiresSMM  = "requires-smm"  // the machine must emulate SMM (-machine smm=on)
)

// FlashFile is one image of a flash mapping (FirmwareFlashFile).
type FlashFile struct {
	Filename string `json:"filename"`
	Format   string `json:"format"` // a QEMU block driver: raw, qcow2
}

// Mapping says how the firmware is loaded (FirmwareMapping, a union on Device). Executable and
// NVRAMTemplate belong to flash; Filename to memory and kernel.
type Mapping struct {
	Device        Device    `json:"device"`
	Mode          Mode      `json:"mode,omitempty"`
	Executable    FlashFile `json:"executable,omitzero"`
	NVRAMTemplate FlashFile `json:"nvram-template,omitzero"`
	Filename      string    `json:"filename,omitempty"`
}

// Target is an emulator and the machine types that can run the firmware; Machines are globs
// against versioned machine types, e.g. "pc-q35-*".
type Target struct {
	Architecture string   `json:"architecture"`
	Machines     []string `json:"machines"`
}

// Descriptor is one firmware descriptor file, as read.
type Descriptor struct {
	// Path is the file the descriptor was read from; its base name is the sort key.
	Path           string   `json:"-"`
	Description    string   `json:"description"`
	InterfaceTypes []string `json:"interface-types"`
	Mapping        Mapping  `json:"mapping"`
	Targets        []Target `json:"targets"`
	Features       []string `json:"features"`
	// Tags are for firmware developers; firmware.json says management software must ignore them.
	Tags []string `json:"tags"`
}

// Name is the descriptor's file name, e.g. "60-edk2-x86_64.json".
func (d Descriptor) Name() string { return filepath.Base(d.Path) }

// Has reports whether the descriptor lists feature.
func (d Descriptor) Has(feature string) bool { return slices.Contains(d.Features, feature) }

// DefaultDirs are the directories QEMU's firmware.json names, most specific first:
// $XDG_CONFIG_HOME/qemu/firmware (per user; $HOME/.config when unset), /etc/qemu/firmware (the
// sysadmin's) and /usr/share/qemu/firmware (the distribution's). The user's directory is left out
// when neither variable is set.
func DefaultDirs() []string {
	return defaultDirs(os.Getenv)
}

func defaultDirs(getenv func(string) string) []string {
	var dirs []string
	if cfg := getenv("XDG_CONFIG_HOME"); filepath.IsAbs(cfg) {
		dirs = append(dirs, filepath.Join(cfg, "qemu", "firmware"))
	} else if home := getenv("HOME"); filepath.IsAbs(home) {
		// The XDG base directory spec says a relative $XDG_CONFIG_HOME is invalid and to be
		// ignored, so it falls back to the default too.
		dirs = append(dirs, filepath.Join(home, ".config", "qemu", "firmware"))
	}
	return append(dirs, "/etc/qemu/firmware", "/usr/share/qemu/firmware")
}

// loadDescriptors reads the descriptors in dirs (most specific first) as firmware.json prescribes:
// a file hides every file of the same name in the directories after it, an empty file hides them
// and is itself ignored, and the survivors are sorted by file name. Like libvirt, only *.json files
// count. A missing directory is normal; an unreadable one, or a malformed descriptor, is an error,
// because skipping it would silently change which firmware a build gets.
func loadDescriptors(dirs []string) ([]Descriptor, error) {
	effective := map[string]string{} // file name → path of the most specific file
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read firmware descriptors: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if !strings.HasSuffix(name, ".json") || e.IsDir() {
				continue
			}
			if _, hidden := effective[name]; !hidden {
				effective[name] = filepath.Join(dir, name)
			}
		}
	}
	names := make([]string, 0, len(effective))
	for name := range effective {
		names = append(names, name)
	}
	sort.Strings(names)

	var descs []Descriptor
	for _, name := range names {
		path := effective[name]
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read firmware descriptor: %w", err)
		}
		if len(data) == 0 {
			continue // an empty file disables the descriptor of that name
		}
		d, err := parseDescriptor(path, data)
		if err != nil {
			return nil, err
		}
		descs = append(descs, d)
	}
	return descs, nil
}

// parseDescriptor decodes one descriptor. Unknown fields and enum values are accepted, since
// firmware.json grows (mode in QEMU 7.0, new features since); fields that selection relies on are
// checked, so that a broken file is reported here rather than as a QEMU failure later.
func parseDescriptor(path string, data []byte) (Descriptor, error) {
	var d Descriptor
	if err := json.Unmarshal(data, &d); err != nil {
		return Descriptor{}, fmt.Errorf("parse firmware descriptor %s: %w (fix it, or hide it with an empty file of the same name in /etc/qemu/firmware)", path, err)
	}
	d.Path = path
	if err := d.validate(); err != nil {
		return Descriptor{}, fmt.Errorf("parse firmware descriptor %s: %w (fix it, or hide it with an empty file of the same name in /etc/qemu/firmware)", path, err)
	}
	if d.Mapping.Device == DeviceFlash && d.Mapping.Mode == "" {
		d.Mapping.Mode = ModeSplit
	}
	return d, nil
}

func (d Descriptor) validate() error {
	if len(d.InterfaceTypes) == 0 {
		return errors.New(`"interface-types" is missing or empty`)
	}
	if len(d.Targets) == 0 {
		return errors.New(`"targets" is missing or empty`)
	}
	for i, t := range d.Targets {
		if t.Architecture == "" || len(t.Machines) == 0 {
			return fmt.Errorf(`"targets"[%d] needs "architecture" and "machines"`, i)
		}
	}
	m := d.Mapping
	switch m.Device {
	case "":
		return errors.New(`"mapping" has no "device"`)
	case DeviceFlash:
		if err := m.Executable.validate("executable"); err != nil {
			return err
		}
		if m.Mode == "" || m.Mode == ModeSplit {
			return m.NVRAMTemplate.validate("nvram-template")
		}
	case DeviceMemory, DeviceKernel:
		if !filepath.IsAbs(m.Filename) {
			return fmt.Errorf(`"mapping"."filename" must be an absolute path, not %q`, m.Filename)
		}
	}
	return nil
}

func (f FlashFile) validate(field string) error {
	if !filepath.IsAbs(f.Filename) {
		return fmt.Errorf(`"mapping".%q."filename" must be an absolute path, not %q`, field, f.Filename)
	}
	if f.Format == "" {
		return fmt.Errorf(`"mapping".%q has no "format"`, field)
	}
	return nil
}
