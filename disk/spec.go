package disk

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ingot-build/ingot/internal/formats"
)

// ErrUnsupported marks an output that cannot be made: a format or an option this package does not
// know, or one that does not apply to the format (bmap on qcow2). errors.Is finds it in what
// Validate and Produce return.
var ErrUnsupported = errors.New("unsupported output")

// OutputSpec is one requested output: a recipe's output, plus the machine an OVA describes.
// Empty strings mean the default.
type OutputSpec struct {
	// Name is the base file name, without extension: "web" gives web.qcow2, web.raw.zst…, and
	// web-minimal.raw for a raw output with shrink minimal (see Files).
	Name string
	// Format is one of formats.Names; Compress, Subformat, Bmap and Shrink are its options, with
	// the values formats.Lookup(Format) lists: an option the format does not take stays empty
	// (or "none").
	Format   string
	Compress string
	// Subformat of a vmdk: streamOptimized for ESXi and vSphere, monolithicSparse for
	// Workstation and VirtualBox.
	Subformat string
	// Bmap writes NAME.raw.bmap (NAME-minimal.raw.bmap when shrunk) beside a raw output; it
	// describes the uncompressed image, so one bmap serves NAME.raw, NAME.raw.zst and
	// NAME.raw.xz, which bmaptool pairs with it by name.
	Bmap bool
	// Shrink minimal (raw) cuts the disk to the end of its last
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

// withDefaults fills the options the format takes with their defaults (formats.Option.Default)
// and the machine's. "none" and "" mean the same thing everywhere: an option the format does not
// take is left empty either way.
func (s OutputSpec) withDefaults() OutputSpec {
	f, _ := formats.Lookup(s.Format)
	for _, key := range optionKeys() {
		v := s.option(key)
		if v == nil {
			continue
		}
		o, takes := f.Option(key)
		switch {
		case takes && *v == "":
			*v = o.Default()
		case !takes && *v == "none":
			*v = ""
		}
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

// optionKeys names the options of OutputSpec as formats (and recipes) name them.
func optionKeys() []string { return []string{"compress", "subformat", "bmap", "shrink"} }

// option points at the field that holds the string option key; nil for bmap, a boolean.
func (s *OutputSpec) option(key string) *string {
	switch key {
	case "compress":
		return &s.Compress
	case "subformat":
		return &s.Subformat
	case "shrink":
		return &s.Shrink
	}
	return nil
}

// Validate says whether Produce can make this output, before any work is done: the pipeline
// calls it while planning, so a bad combination fails before the guest boots. Which formats and
// options exist is the formats package's table, which recipes checks against too.
func (s OutputSpec) Validate() error {
	s = s.withDefaults()
	if s.Name == "" || strings.ContainsAny(s.Name, `/\`) || s.Name == "." || s.Name == ".." {
		return fmt.Errorf("%w: output name %q must be a plain file name", ErrUnsupported, s.Name)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s output: %s", ErrUnsupported, s.Format, fmt.Sprintf(format, args...))
	}
	f, ok := formats.Lookup(s.Format)
	if !ok {
		return fmt.Errorf("%w: format %q (known: %s)", ErrUnsupported, s.Format, strings.Join(formats.Names(), ", "))
	}
	for _, key := range optionKeys() {
		given, value := key, "" // bmap: "true" when set
		if v := s.option(key); v != nil {
			given, value = fmt.Sprintf("%s %q", key, *v), *v
		} else if s.Bmap {
			value = "true"
		}
		o, takes := f.Option(key)
		switch {
		case !takes && value != "":
			return bad("%s: %s", given, notTaken(s.Format, key))
		case takes && o.Values != nil && !slices.Contains(o.Values, value):
			return bad("%s (known: %s)", given, strings.Join(o.Values, ", "))
		}
	}
	if !slices.Contains([]string{"bios", "uefi"}, s.Firmware) {
		return bad("firmware %q (known: bios, uefi)", s.Firmware)
	}
	if !slices.Contains([]string{"scsi", "sata"}, s.DiskBus) {
		return bad("disk bus %q (known: scsi, sata)", s.DiskBus)
	}
	return nil
}

// notTaken says why format does not take the option key (one of optionKeys), naming the formats
// that do.
func notTaken(format, key string) string {
	takers := strings.Join(formats.TakenBy(key), " and ")
	switch key {
	case "compress":
		return fmt.Sprintf("%s outputs are not compressed (%s are)", format, takers)
	case "subformat":
		return fmt.Sprintf("only %s has subformats", takers)
	case "bmap":
		return fmt.Sprintf("a block map describes a %s image; ask for format %s with bmap", takers, takers)
	default: // shrink, the last of optionKeys
		return fmt.Sprintf("shrinking cuts a %s image for flashing; the other formats keep the virtual size", takers)
	}
}

// Files returns the names of the files Produce makes for s, the main one first, so a caller can
// spot two outputs that would write the same file before producing either (see Clashes).
//
// A raw output is named after the image it holds, not after its options: STEM.raw, plus .zst
// or .xz when compressed, and STEM.raw.bmap for its bmap, where STEM is Name for the whole disk
// and Name-minimal for shrink minimal, a different (shorter) image. bmaptool finds a bmap by
// the image's name (see bmaptoolCandidates), so a stem per image is what makes each bmap pair
// with its own image: NAME.raw.zst and NAME.raw.xz find NAME.raw.bmap, which describes what
// they decompress to, and NAME-minimal.raw never finds it.
func (s OutputSpec) Files() []string {
	s = s.withDefaults()
	main := s.stem() + "." + s.Format
	switch {
	case s.Format == "raw" && s.Compress == "zstd":
		main += ".zst"
	case s.Format == "raw" && s.Compress == "xz":
		main += ".xz"
	}
	files := []string{main}
	if s.Bmap {
		files = append(files, s.stem()+".raw.bmap")
	}
	return files
}

// stem is the name of the image an output holds, before its extensions: Name, or Name-minimal
// for the shrunk image.
func (s OutputSpec) stem() string {
	if s.Shrink == "minimal" {
		return s.Name + "-minimal"
	}
	return s.Name
}

// Clash is a reason two outputs of one set cannot both be made as asked: they would write the
// same file, or bmaptool would pair one's image with a bmap of another image. It wraps
// ErrUnsupported.
type Clash struct {
	// First and Second index the specs given to Clashes; First < Second.
	First, Second int
	// Problem says what goes wrong, naming the files; Fix says what to change.
	Problem, Fix string
}

func (c *Clash) Error() string { return c.Problem + "; " + c.Fix }

func (c *Clash) Unwrap() error { return ErrUnsupported }

// Clashes checks a set of outputs made together into one directory, each of them valid on its
// own (Validate), and returns what stops them coexisting, at most one clash per pair, in the
// order of the specs. A build calls it while planning, so that a set whose files would collide,
// or whose bmaps bmaptool would pair with the wrong image, fails before the guest boots rather
// than after the outputs are written (or, worse, when a user flashes one).
//
// The names of Files keep every set with one Name apart but two outputs that ask for the same
// file, or for two bmaps of one image (raw+zstd+bmap and raw+xz+bmap: one bmap serves both).
// The bmaptool check matters for sets with several names, where one name may extend another
// ("a" and "a.raw").
func Clashes(specs []OutputSpec) []*Clash {
	var clashes []*Clash
	seen := map[[2]int]bool{}
	add := func(i, j int, problem, fix string) {
		i, j = min(i, j), max(i, j)
		if !seen[[2]int{i, j}] {
			seen[[2]int{i, j}] = true
			clashes = append(clashes, &Clash{First: i, Second: j, Problem: problem, Fix: fix})
		}
	}
	owner := map[string]int{}
	for i, s := range specs {
		s = s.withDefaults()
		for _, f := range s.Files() {
			j, ok := owner[f]
			if !ok {
				owner[f] = i
				continue
			}
			other := specs[j].withDefaults()
			if strings.HasSuffix(f, ".bmap") && other.Shrink == s.Shrink {
				add(j, i, "both write "+f, fmt.Sprintf("a bmap describes the uncompressed image, so one serves %s and %s alike: ask for a bmap on one of them only",
					other.Files()[0], s.Files()[0]))
			} else {
				add(j, i, "both write "+f, "ask for each file once: drop one of them, or change its compression")
			}
		}
	}
	for i, s := range specs {
		s = s.withDefaults()
		if s.Format != "raw" {
			continue
		}
		image := s.Files()[0]
		for _, cand := range bmaptoolCandidates(image) {
			j, ok := owner[cand]
			if !ok || !strings.HasSuffix(cand, ".bmap") {
				continue
			}
			// All outputs of a set are made from one disk, so the shrink alone says which
			// image a bmap describes.
			if other := specs[j].withDefaults(); other.Shrink != s.Shrink {
				add(i, j, fmt.Sprintf("bmaptool would pair %s with %s, the bmap of %s, a different image (shrink %s, not %s)",
					image, cand, other.Files()[0], other.Shrink, s.Shrink),
					"give the outputs names that do not extend one another: bmaptool looks for IMAGE.bmap, then strips one extension at a time")
			}
			break // bmaptool takes the first bmap it finds
		}
	}
	return clashes
}

// bmaptoolCandidates returns, in order, the names bmaptool copy tries as the bmap of image when
// not given one: image.bmap, then with one extension stripped at a time (img.raw.zst:
// img.raw.zst.bmap, img.raw.bmap, img.bmap). That is find_and_open_bmap in bmaptools/CLI.py of
// bmap-tools 3.6 (Debian bookworm), whose extensions are Python's os.path.splitext: a leading
// dot starts no extension. image is a file name, without a directory.
func bmaptoolCandidates(image string) []string {
	var out []string
	for p := image; ; {
		out = append(out, p+".bmap")
		dot := strings.LastIndexByte(p, '.')
		if dot <= 0 || strings.Trim(p[:dot], ".") == "" {
			return out
		}
		p = p[:dot]
	}
}
