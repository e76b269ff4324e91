// Package recipes reads ingot's YAML recipes into typed, validated values: the schema, the
// defaults, variables, the checks that can run before a byte is downloaded, and the built-in
// catalogue. docs/recipes.md is the user's reference; this package is its single source of truth,
// but for the output formats and their options, which are internal/formats' table (disk makes
// what it lists), and for which files outputs write, disk's naming (bake.Check refuses clashes).
//
// # Why decode from the AST
//
// A recipe is parsed once with goccy/go-yaml and decoded by walking its AST, never by unmarshalling
// into structs. That is how every value keeps its file:line:column (errors point at the exact
// scalar, and provisioning steps carry their position so a failing step can name its line), how
// unknown keys are caught with a "did you mean" suggestion, and how the tagged unions (a provision
// step is exactly one of shell, file, reboot or wait_cloud_init; generalize is a boolean or a
// mapping) are decoded without guessing.
//
// # Variables after parsing
//
// ${var.NAME} references are substituted inside string scalars after parsing, never in the text
// before it (the debos trap): a value cannot change the document's structure, and positions stay
// true. Values come from --var, then INGOT_VAR_NAME in the environment, then the recipe's default.
//
// # Errors
//
// A broken recipe yields Errors: every problem found (not only the first), each naming file, line,
// column and field path, with a hint, rendered like a compiler's messages.
//
// The Go types carry yaml tags although decoding does not use reflection on them: the tags name
// each field's key, the decoder takes its list of known keys from them, and a test holds them and
// docs/recipe.schema.json in step.
package recipes

import (
	"time"
)

// Recipe is a loaded, validated recipe with its defaults applied. Relative paths in it have been
// resolved against the recipe file's directory.
type Recipe struct {
	// Name names the build and its output directory (./out/NAME/).
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Variables holds the value every declared variable resolved to.
	Variables  map[string]string `yaml:"variables"`
	Source     Source            `yaml:"source"`
	Machine    Machine           `yaml:"machine"`
	CloudInit  CloudInit         `yaml:"cloud_init"`
	SSH        SSH               `yaml:"ssh"`
	Provision  []Step            `yaml:"provision"`
	Generalize Generalize        `yaml:"generalize"`
	Outputs    []Output          `yaml:"outputs"`
	// Test says which outputs are test-booted, and under which firmwares, before publishing.
	Test Test `yaml:"test"`
	// Tests are the recipe's own checks, run in every full test boot after the built-in ones.
	Tests []Check `yaml:"tests"`
	// Drift holds a build to its baseline (ingot build --baseline).
	Drift Drift `yaml:"drift"`
	// Secrets are the values steps may be handed (shell secrets: and stdin:), by name.
	Secrets map[string]Secret `yaml:"secrets"`
	// SecretScan documents what the scan of the finished disk may find.
	SecretScan SecretScan `yaml:"secret_scan"`

	// File is where the recipe came from: the path as given to Load, or "catalog:NAME" for a
	// built-in recipe (CatalogSource returns its text).
	File string `yaml:"-"`
	// Dir is the directory relative paths were resolved against; empty for built-in recipes.
	Dir string `yaml:"-"`

	positions map[string]Pos
}

// PosOf returns where the value at a field path was written, e.g. "provision[2].shell.env" or
// "cloud_init.user_data.users[0]", so later stages can point errors at the recipe.
func (r *Recipe) PosOf(path string) (Pos, bool) {
	p, ok := r.positions[path]
	return p, ok
}

// Source is where the build starts from: exactly one of Disk, ISO and Image is set.
type Source struct {
	Disk  *DiskSource  `yaml:"disk"`
	ISO   *ISOSource   `yaml:"iso"`
	Image *ImageSource `yaml:"image"`
}

// DiskSource is a cloud image, used as the backing file of the build disk.
type DiskSource struct {
	// URL is an http(s) or file URL, or an absolute local path.
	URL string `yaml:"url"`
	// SHA256 is 64 lower-case hex digits, or "file:" and the location of a checksum file that
	// lists the input by its file name. Empty when the input is pinned by SHA512 instead.
	SHA256 string `yaml:"sha256"`
	// SHA512 is the same for a sha512 (Debian publishes only SHA512SUMS for its cloud images).
	SHA512 string `yaml:"sha512"`
	// Format is qcow2 or raw; empty means detect it.
	Format string `yaml:"format"`
	Pos    Pos    `yaml:"-"`
}

// Pin is the input's checksum in the form the source package reads: the sha256 pin as written,
// or "sha512:HEX" / "sha512:file:LOCATION" when the recipe pins a sha512.
func (d *DiskSource) Pin() string { return pin(d.SHA256, d.SHA512) }

// ISOSource is an installer ISO, driven unattended: its kernel and initrd booted directly with
// extra arguments, or its own boot menu typed at with BootKeys.
type ISOSource struct {
	URL    string `yaml:"url"`
	SHA256 string `yaml:"sha256"`
	SHA512 string `yaml:"sha512"`
	// Kernel and Initrd are absolute paths inside the ISO, e.g. /casper/vmlinuz.
	Kernel string `yaml:"kernel"`
	Initrd string `yaml:"initrd"`
	// Append is the kernel command line when Kernel is set.
	Append string `yaml:"append"`
	// BootKeys are typed after BootWait, one sequence per element, in Packer's boot_command
	// syntax ("<wait5>", "<enter>", "e<down><end>").
	BootKeys       []string      `yaml:"boot_keys"`
	BootWait       time.Duration `yaml:"boot_wait"`
	InstallTimeout time.Duration `yaml:"install_timeout"`
	Pos            Pos           `yaml:"-"`
}

// Pin is the ISO's checksum in the form the source package reads; see DiskSource.Pin.
func (i *ISOSource) Pin() string { return pin(i.SHA256, i.SHA512) }

func pin(sha256, sha512 string) string {
	if sha512 != "" {
		return "sha512:" + sha512
	}
	return sha256
}

// ImageSource is an image from ingot's local image store, named as it was stored. In YAML it is
// a plain string: `image: NAME`.
type ImageSource struct {
	Name string `yaml:"-"`
	Pos  Pos    `yaml:"-"`
}

// Machine is the build machine.
type Machine struct {
	// Arch is the guest's architecture as QEMU names it: x86_64 or aarch64. The default is the
	// host's, the one KVM can run.
	Arch      string `yaml:"arch"`
	CPUs      int    `yaml:"cpus"`
	MemoryMiB int    `yaml:"memory"`
	// DiskBytes is the build disk's virtual size. Zero for disk and image sources means the
	// source's own size; the disk is never made smaller than the source.
	DiskBytes int64 `yaml:"disk"`
	// Firmware is bios, uefi or uefi-secure.
	Firmware string `yaml:"firmware"`
	// Accel is auto, kvm or tcg.
	Accel string `yaml:"accel"`
	// Driver is qemu or libvirt.
	Driver string `yaml:"driver"`
	// QemuArgs are extra argv fragments, each appended as given: the escape hatch.
	QemuArgs [][]string `yaml:"qemu_args"`
	Pos      Pos        `yaml:"-"`
}

// CloudInit is the recipe's part of the NoCloud seed; ingot merges in its build user and keys.
type CloudInit struct {
	// UserData is the cloud-config (or, with a top-level autoinstall key, Ubuntu's autoinstall
	// config) as decoded YAML: map[string]any, []any, string, int64, uint64, float64, bool, nil.
	UserData map[string]any `yaml:"user_data"`
	// NetworkConfig is a network config version 2, decoded the same way.
	NetworkConfig map[string]any `yaml:"network_config"`
	// SeedFormat is iso or vfat.
	SeedFormat string `yaml:"seed_format"`
	Pos        Pos    `yaml:"-"`
}

// SSH is how ingot reaches the guest.
type SSH struct {
	User    string        `yaml:"user"`
	Timeout time.Duration `yaml:"timeout"`
}

// Step kinds, as Step.Kind holds them.
const (
	StepShell         = "shell"
	StepFile          = "file"
	StepReboot        = "reboot"
	StepWaitCloudInit = "wait_cloud_init"
)

// Step is one provisioning step: Kind says which one of the pointers is set.
type Step struct {
	Kind          string         `yaml:"-"`
	Shell         *Shell         `yaml:"shell"`
	File          *File          `yaml:"file"`
	Reboot        *Reboot        `yaml:"reboot"`
	WaitCloudInit *WaitCloudInit `yaml:"wait_cloud_init"`
	// NoCache is set by `cache: false`, written beside the step's kind: the step's result
	// depends on more than its inputs (apt-get upgrade fetches whatever the mirror has today),
	// so it always runs, and so does every step after it, whatever checkpoints exist. The key is
	// not a step kind (see stepKinds).
	NoCache bool `yaml:"cache"`
	// Pos is where the step starts, so a failing step can name its line.
	Pos Pos `yaml:"-"`
}

// Shell runs a command in the guest: Inline, or Script (a local file, uploaded and run; its
// shebang picks the interpreter).
type Shell struct {
	Inline string `yaml:"inline"`
	// Script is an absolute local path.
	Script string            `yaml:"script"`
	Env    map[string]string `yaml:"env"`
	// Secrets are names from the recipe's secrets:, each exported to the command under its
	// name; the values travel over the session's stdin, never on a command line.
	Secrets []string `yaml:"secrets"`
	// Stdin is a secret's name whose value is the command's standard input.
	Stdin string `yaml:"stdin"`
	// Sudo runs the command as root; the default.
	Sudo bool `yaml:"sudo"`
	// Timeout bounds the command; zero means none.
	Timeout time.Duration `yaml:"timeout"`
}

// File copies a file or directory between the host and the guest.
type File struct {
	// Src is an absolute local path for uploads, an absolute guest path for downloads.
	Src string `yaml:"src"`
	// Dst is an absolute guest path for uploads. For downloads it is an absolute local path, or
	// a relative one, which names a file published with the outputs.
	Dst string `yaml:"dst"`
	// Mode is an octal mode such as "0644" (uploads only). For a file it defaults to 0644; for a
	// directory tree it applies to every regular file, which otherwise keeps its local mode.
	Mode string `yaml:"mode"`
	// DirMode is an octal mode for every directory of an uploaded tree, its top included;
	// without it directories keep their local modes. Files are refused it.
	DirMode string `yaml:"dir_mode"`
	// Owner is user or user:group (uploads only; default root:root, since provisioning runs
	// as root and the build user is deleted by generalize).
	Owner string `yaml:"owner"`
	// Direction is upload or download.
	Direction string `yaml:"direction"`
}

// Reboot reboots the guest and waits for SSH again.
type Reboot struct {
	Timeout time.Duration `yaml:"timeout"`
}

// WaitCloudInit waits until cloud-init has finished in the guest and fails on its errors.
type WaitCloudInit struct{}

// Generalize says whether the image is made into a template, and what to keep.
type Generalize struct {
	Enabled bool `yaml:"-"`
	// Keep lists parts of the generalization to skip; see GeneralizeKeepable.
	Keep []string `yaml:"keep"`
	Pos  Pos      `yaml:"-"`
}

// GeneralizeKeepable lists what generalize.keep may name: the parts of generalization that a
// recipe can opt out of.
func GeneralizeKeepable() []string {
	return []string{"machine-id", "ssh-host-keys", "logs", "package-cache", "cloud-init", "shell-history", "build-user"}
}

// Output is one requested artifact: a format and its options, as internal/formats lists them.
// Options the format takes have their defaults; the others are empty.
type Output struct {
	Format    string `yaml:"format"`
	Compress  string `yaml:"compress"`
	Subformat string `yaml:"subformat"`
	// Bmap writes a block map beside a raw output.
	Bmap bool `yaml:"bmap"`
	// Shrink minimal (raw) cuts the virtual disk to what the partitions need.
	Shrink string `yaml:"shrink"`
	Pos    Pos    `yaml:"-"`
}
