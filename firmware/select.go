package firmware

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
)

// Kind is the firmware a recipe asks for (machine.firmware).
type Kind string

const (
	// BIOS is SeaBIOS.
	BIOS Kind = "bios"
	// UEFI is OVMF without Secure Boot enforced, so unsigned bootloaders and kernels boot.
	UEFI Kind = "uefi"
	// UEFISecure is OVMF with Secure Boot enforced: a build with keys enrolled (on Debian,
	// Microsoft's) and SMM, so that the guest's kernel cannot tamper with the variable store.
	UEFISecure Kind = "uefi-secure"
)

// ParseKind checks a recipe's firmware name.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case BIOS, UEFI, UEFISecure:
		return k, nil
	}
	return "", fmt.Errorf("unknown firmware %q: want bios, uefi or uefi-secure", s)
}

// DefaultSeaBIOS is the SeaBIOS image QEMU 7.2 on Debian loads when given no -bios: its firmware
// search path (qemu-system-x86_64 -L help) includes /usr/share/seabios, and both pc and q35 use
// bios-256k.bin. The seabios package provides it.
const DefaultSeaBIOS = "/usr/share/seabios/bios-256k.bin"

// Finder finds firmware through QEMU's firmware descriptors.
type Finder struct {
	dirs    []string
	seabios string
}

// Option configures a Finder.
type Option func(*Finder)

// WithDirs replaces DefaultDirs: descriptor directories, most specific first. Tests use it to read
// fixtures.
func WithDirs(dirs ...string) Option {
	return func(f *Finder) { f.dirs = dirs }
}

// WithSeaBIOS replaces DefaultSeaBIOS, the image used for BIOS when no descriptor offers one.
func WithSeaBIOS(path string) Option {
	return func(f *Finder) { f.seabios = path }
}

// NewFinder returns a Finder over DefaultDirs, or what the options say.
func NewFinder(opts ...Option) *Finder {
	f := &Finder{dirs: DefaultDirs(), seabios: DefaultSeaBIOS}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Dirs are the descriptor directories searched, most specific first.
func (f *Finder) Dirs() []string { return append([]string(nil), f.dirs...) }

// List returns the descriptors in effect, in the order selection considers them, for `ingot
// version` and diagnostics. Overridden and disabled (empty) files are not in it.
func (f *Finder) List() ([]Descriptor, error) {
	return loadDescriptors(f.dirs)
}

// Select chooses firmware of kind for a guest of arch (a QEMU target such as x86_64 or aarch64;
// Go's amd64 and arm64 are accepted too) on machine: a versioned machine type such as pc-q35-7.2,
// matched against the descriptors' globs as firmware.json says, or one of QEMU's aliases q35, pc
// or virt, which match a descriptor that accepts every version of that machine ("pc-q35-*").
//
// Among the descriptors that fit, the first in file-name order wins, as firmware.json prescribes,
// except that for UEFI a build without Secure Boot and without SMM is preferred: on Debian,
// 50-edk2-x86_64-secure.json (Secure Boot capable, keys not enrolled, so not enforced) sorts
// before 60-edk2-x86_64.json but needs SMM for nothing ingot wants. A descriptor with enrolled keys
// is never UEFI: it enforces Secure Boot, and that is what UEFISecure is for.
//
// For BIOS, Debian ships no descriptor; then Select returns QEMU's own SeaBIOS (DefaultSeaBIOS)
// with an empty Descriptor, if that file exists.
//
// When nothing fits, the error is a *NotFoundError (errors.Is ErrNotFound) that names the Debian
// package to install and why each candidate descriptor was passed over.
func (f *Finder) Select(kind Kind, arch, machine string) (Firmware, error) {
	if _, err := ParseKind(string(kind)); err != nil {
		return Firmware{}, fmt.Errorf("select firmware: %w", err)
	}
	arch = normalizeArch(arch)
	if arch == "" || machine == "" {
		return Firmware{}, fmt.Errorf("select %s firmware: architecture %q and machine %q must both be set", kind, arch, machine)
	}
	descs, err := f.List()
	if err != nil {
		return Firmware{}, fmt.Errorf("select %s firmware: %w", kind, err)
	}
	nf := &NotFoundError{Kind: kind, Arch: arch, Machine: machine, Package: debianPackage(kind, arch), Dirs: f.Dirs()}
	best, bestRank := -1, 0
	for i, d := range descs {
		if !d.offers(kind) {
			continue
		}
		if reason := d.rejects(kind, arch, machine); reason != "" {
			nf.Rejected = append(nf.Rejected, Rejection{Descriptor: d.Path, Reason: reason})
			continue
		}
		if r := d.rank(kind); best < 0 || r < bestRank {
			best, bestRank = i, r
		}
	}
	if best >= 0 {
		return fromDescriptor(kind, descs[best]), nil
	}
	if kind == BIOS && isX86(arch) && isPCMachine(machine) {
		if _, err := os.Stat(f.seabios); err == nil {
			return Firmware{
				Kind:        BIOS,
				Description: "SeaBIOS, QEMU's default BIOS (no firmware descriptor offers one)",
				Device:      DeviceMemory,
				Executable:  Image{Path: f.seabios, Format: "raw"},
			}, nil
		}
		nf.Rejected = append(nf.Rejected, Rejection{Descriptor: "QEMU's default", Reason: f.seabios + " does not exist"})
	}
	return Firmware{}, nf
}

// offers reports whether the descriptor is firmware of the kind's interface at all; others are not
// worth mentioning in an error.
func (d Descriptor) offers(kind Kind) bool {
	want := "uefi"
	if kind == BIOS {
		want = "bios"
	}
	for _, t := range d.InterfaceTypes {
		if t == want {
			return true
		}
	}
	return false
}

// rejects says why the descriptor does not fit, or "" if it does. The last check looks at the
// files, so that a descriptor whose package was half removed is reported rather than booted.
func (d Descriptor) rejects(kind Kind, arch, machine string) string {
	if !d.runs(arch, machine) {
		return fmt.Sprintf("targets %s, not %s machine %s", d.targetList(), arch, machine)
	}
	m := d.Mapping
	switch kind {
	case BIOS:
		if m.Device != DeviceMemory {
			return fmt.Sprintf("is mapped as %s; ingot loads a BIOS into memory (-bios)", m.Device)
		}
	case UEFI, UEFISecure:
		if m.Device != DeviceFlash {
			return fmt.Sprintf("is mapped as %s; ingot needs UEFI on flash", m.Device)
		}
		switch m.Mode {
		case ModeSplit, ModeCombined:
		case ModeStateless:
			// An installer writes its boot entry to NVRAM and reboots into it; a build also
			// reboots during provisioning. Variables lost at reset break both.
			return "keeps no UEFI variables (stateless); installs and reboots need them"
		default:
			return fmt.Sprintf("has flash mode %q, which ingot does not know", m.Mode)
		}
		if kind == UEFI && d.Has(FeatureEnrolledKeys) {
			return "enforces Secure Boot (enrolled-keys); that is uefi-secure"
		}
		if kind == UEFISecure {
			var missing []string
			for _, f := range []string{FeatureSecureBoot, FeatureEnrolledKeys, FeatureRequiresSMM} {
				if !d.Has(f) {
					missing = append(missing, f)
				}
			}
			if len(missing) > 0 {
				return "lacks " + strings.Join(missing, ", ")
			}
		}
	}
	for _, file := range d.files() {
		if _, err := os.Stat(file); err != nil {
			return fmt.Sprintf("names %s, which cannot be used: %v", file, err)
		}
	}
	return ""
}

// rank orders the descriptors that fit, lower first; ties keep file-name order.
func (d Descriptor) rank(kind Kind) int {
	if kind != UEFI {
		return 0
	}
	r := 0
	if d.Has(FeatureSecureBoot) {
		r++
	}
	if d.Has(FeatureRequiresSMM) {
		r++
	}
	return r
}

func (d Descriptor) files() []string {
	m := d.Mapping
	switch {
	case m.Device != DeviceFlash:
		return []string{m.Filename}
	case m.Mode == ModeSplit:
		return []string{m.Executable.Filename, m.NVRAMTemplate.Filename}
	default:
		return []string{m.Executable.Filename}
	}
}

func (d Descriptor) runs(arch, machine string) bool {
	for _, t := range d.Targets {
		if normalizeArch(t.Architecture) != arch {
			continue
		}
		for _, glob := range t.Machines {
			if machineMatches(glob, arch, machine) {
				return true
			}
		}
	}
	return false
}

func (d Descriptor) targetList() string {
	var s []string
	for _, t := range d.Targets {
		s = append(s, t.Architecture+" "+strings.Join(t.Machines, " "))
	}
	return strings.Join(s, "; ")
}

// machineMatches matches a descriptor's machine glob. A versioned machine type is matched as a
// glob, like libvirt does. An alias stands for some version of its family that only QEMU knows
// (q35 is pc-q35-7.2 in QEMU 7.2), so it matches only a glob that accepts every version: a literal
// prefix of the family followed by a single trailing "*".
func machineMatches(glob, arch, machine string) bool {
	if ok, err := path.Match(glob, machine); err == nil && ok {
		return true
	}
	family, ok := aliasFamily(arch, machine)
	if !ok {
		return false
	}
	lit, ok := strings.CutSuffix(glob, "*")
	return ok && !strings.ContainsAny(lit, `*?[\`) && strings.HasPrefix(family, lit)
}

// aliasFamily maps QEMU's unversioned machine aliases to the prefix of the versioned types they
// stand for.
func aliasFamily(arch, machine string) (string, bool) {
	switch {
	case isX86(arch) && machine == "q35":
		return "pc-q35-", true
	case isX86(arch) && machine == "pc":
		return "pc-i440fx-", true
	case arch == "aarch64" && machine == "virt":
		return "virt-", true
	}
	return "", false
}

func isX86(arch string) bool { return arch == "x86_64" || arch == "i386" }

func isPCMachine(machine string) bool {
	return machine == "q35" || machine == "pc" ||
		strings.HasPrefix(machine, "pc-q35-") || strings.HasPrefix(machine, "pc-i440fx-")
}

// normalizeArch turns Go's names for the architectures into QEMU's (SysEmuTarget).
func normalizeArch(arch string) string {
	switch arch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i386"
	}
	return arch
}

// debianPackage names the Debian package that ships firmware of kind for arch, or "".
func debianPackage(kind Kind, arch string) string {
	switch {
	case kind == BIOS && isX86(arch):
		return "seabios"
	case kind == BIOS:
		return ""
	case arch == "x86_64":
		return "ovmf"
	case arch == "i386":
		return "ovmf-ia32"
	case arch == "aarch64":
		return "qemu-efi-aarch64"
	case arch == "arm":
		return "qemu-efi-arm"
	}
	return ""
}

// ErrNotFound is what a *NotFoundError is (errors.Is).
var ErrNotFound = errors.New("firmware not found")

// NotFoundError says that no firmware fits, what was looked at, and what to install.
type NotFoundError struct {
	Kind          Kind
	Arch, Machine string
	Package       string   // the Debian package that ships such firmware; "" if none is known
	Dirs          []string // the descriptor directories searched
	Rejected      []Rejection
}

// Rejection is a descriptor that offered the right kind of firmware but did not fit.
type Rejection struct {
	Descriptor string // its path
	Reason     string
}

func (e *NotFoundError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "no %s firmware for %s machine %s", e.Kind, e.Arch, e.Machine)
	if len(e.Rejected) == 0 {
		fmt.Fprintf(&sb, ": no firmware descriptor in %s offers one", strings.Join(e.Dirs, ", "))
	}
	for i, r := range e.Rejected {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&sb, "%s%s %s", sep, r.Descriptor, r.Reason)
	}
	if e.Package != "" {
		fmt.Fprintf(&sb, "; the Debian package %s provides it: apt-get install %s", e.Package, e.Package)
	} else {
		sb.WriteString("; no Debian package for it is known to ingot")
	}
	return sb.String()
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }
