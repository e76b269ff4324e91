package disk

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrUnsupported marks an output that cannot be made: a format or an option this package does not
// know, or one that does not apply to the format (bmap on qcow2). errors.Is finds it in what
// Validate and Produce return.
var ErrUnsupported = errors.New("unsupported output")

// OutputSpec is one requested output: a recipe's output, plus the machine an OVA describes.
// Empty strings mean the default.
type OutputSpec struct {
	// Name is the base file name, without extension: "web" gives web.qcow2, web.raw.zst…
	Name string
	// Format is qcow2, vmdk, vhdx, raw or ova.
	Format string
	// Compress is none (default), zlib or zstd for qcow2; none, zstd or xz for raw.
	Compress string
	// Subformat is streamOptimized (default: ESXi, vSphere) or monolithicSparse (Workstation,
	// VirtualBox) for vmdk.
	Subformat string
	// Bmap writes NAME.raw.bmap beside a raw output; it describes the uncompressed image, so
	// one bmap serves NAME.raw, NAME.raw.zst and NAME.raw.xz.
	Bmap bool
	// Shrink is none (default) or minimal for raw: minimal cuts the disk to the end of its last
	// partition after shrinking that partition's filesystem to what it holds.
	Shrink string

	// The machine an OVA describes. Ignored by the other formats.
	CPUs      int    // default 1
	MemoryMiB int64  // default 1024
	Firmware  string // bios (default) or uefi
	// DiskBus is the OVA's disk controller: scsi (default; LSI Logic, which ESXi, Workstation
	// and VirtualBox all import) or sata (AHCI; some VirtualBox versions reject VMware's
	// "vmware.sata.ahci" subtype).
	DiskBus string
}

// Artifact is one file Produce made.
type Artifact struct {
	Path string `json:"path"`
	// Format is what the file is: qcow2, vmdk, vhdx, raw, raw.zst, raw.xz, bmap or ova.
	Format string `json:"format"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// withDefaults fills the empty options. "none" and "" mean the same thing everywhere.
func (s OutputSpec) withDefaults() OutputSpec {
	if s.Compress == "" {
		s.Compress = "none"
	}
	if s.Format == "vmdk" && s.Subformat == "" {
		s.Subformat = "streamOptimized"
	}
	if s.Shrink == "" {
		s.Shrink = "none"
	}
	if s.CPUs <= 0 {
		s.CPUs = 1
	}
	if s.MemoryMiB <= 0 {
		s.MemoryMiB = 1024
	}
	if s.Firmware == "" {
		s.Firmware = "bios"
	}
	if s.DiskBus == "" {
		s.DiskBus = "scsi"
	}
	return s
}

// Validate says whether Produce can make this output, before any work is done: the pipeline
// calls it while planning, so a bad combination fails before the guest boots.
func (s OutputSpec) Validate() error {
	s = s.withDefaults()
	if s.Name == "" || strings.ContainsAny(s.Name, `/\`) || s.Name == "." || s.Name == ".." {
		return fmt.Errorf("%w: output name %q must be a plain file name", ErrUnsupported, s.Name)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s output: %s", ErrUnsupported, s.Format, fmt.Sprintf(format, args...))
	}
	compress := map[string][]string{"qcow2": {"none", "zlib", "zstd"}, "raw": {"none", "zstd", "xz"}}
	switch s.Format {
	case "qcow2", "vmdk", "vhdx", "raw", "ova":
	default:
		return fmt.Errorf("%w: format %q (known: qcow2, vmdk, vhdx, raw, ova)", ErrUnsupported, s.Format)
	}
	if ok := compress[s.Format]; s.Compress != "none" && !slices.Contains(ok, s.Compress) {
		if ok == nil {
			return bad("compress %q: %s outputs are not compressed (qcow2 and raw are)", s.Compress, s.Format)
		}
		return bad("compress %q (known: %s)", s.Compress, strings.Join(ok, ", "))
	}
	if s.Format == "vmdk" && !slices.Contains([]string{"streamOptimized", "monolithicSparse"}, s.Subformat) {
		return bad("subformat %q (known: streamOptimized, monolithicSparse)", s.Subformat)
	}
	if s.Format != "vmdk" && s.Subformat != "" {
		return bad("subformat %q: only vmdk has subformats", s.Subformat)
	}
	if s.Bmap && s.Format != "raw" {
		return bad("bmap: a block map describes a raw image; ask for format raw with bmap")
	}
	if !slices.Contains([]string{"none", "minimal"}, s.Shrink) {
		return bad("shrink %q (known: none, minimal)", s.Shrink)
	}
	if s.Shrink == "minimal" && s.Format != "raw" {
		return bad("shrink minimal cuts a raw image for flashing; the other formats keep the virtual size")
	}
	if !slices.Contains([]string{"bios", "uefi"}, s.Firmware) {
		return bad("firmware %q (known: bios, uefi)", s.Firmware)
	}
	if !slices.Contains([]string{"scsi", "sata"}, s.DiskBus) {
		return bad("disk bus %q (known: scsi, sata)", s.DiskBus)
	}
	return nil
}

// Files returns the names of the files Produce makes for s, the main one first, so a caller can
// spot two outputs that would write the same file before producing either.
func (s OutputSpec) Files() []string {
	s = s.withDefaults()
	main := s.Name + "." + s.Format
	switch {
	case s.Format == "raw" && s.Compress == "zstd":
		main += ".zst"
	case s.Format == "raw" && s.Compress == "xz":
		main += ".xz"
	}
	files := []string{main}
	if s.Bmap {
		files = append(files, s.Name+".raw.bmap")
	}
	return files
}
