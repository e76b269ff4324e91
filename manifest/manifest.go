// Package manifest is manifest.json, the record a build writes beside its outputs (what went in,
// what came out, and how), and its sidecar SHA256SUMS: the types, the schema version, and a strict
// decoder. bake writes it; inspect (and, as they arrive, diff, verify and push) read it through
// this package only, so a reader never re-declares half of it and misreads the rest.
//
// # Versions
//
// A manifest carries schema_version, MAJOR.MINOR. A new minor only adds fields, so a reader takes
// any minor of a major it knows, ignoring the fields it does not know yet; a new major changes or
// removes one, so a reader refuses a major it does not know rather than misread the file. A file
// without schema_version is not a manifest (or one older than the versioning): it is refused too.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

// Version is the schema_version this package writes and the newest it reads in full.
const Version = "1.3"

// ErrVersion marks a manifest whose schema_version is missing, malformed, or of a major this
// package does not read.
var ErrVersion = errors.New("unsupported manifest schema_version")

// Manifest is manifest.json: what went in, what came out, and how. JSON names are the file's
// contract: add fields (with a new minor Version), never rename one.
type Manifest struct {
	// SchemaVersion is MAJOR.MINOR; Write sets it to Version.
	SchemaVersion string    `json:"schema_version"`
	Name          string    `json:"name"`
	BuildID       string    `json:"build_id"`
	Started       time.Time `json:"started"`
	Finished      time.Time `json:"finished"`
	Recipe        Recipe    `json:"recipe"`
	Inputs        []Input   `json:"inputs"`
	Tool          Tool      `json:"tool"`
	Firmware      string    `json:"firmware"`
	// Arch is the machine's architecture as QEMU names it: x86_64 or aarch64 (since 1.3; an
	// older manifest is x86_64).
	Arch  string       `json:"arch,omitempty"`
	Steps []StepTiming `json:"steps"`
	// Provisioners times each recipe step of the provision stage, in order.
	Provisioners []StepTiming `json:"provisioners"`
	Outputs      []File       `json:"outputs"`
	// Downloads are the files that download steps published beside the outputs (format
	// "download"), each file of a downloaded tree on its own; SHA256SUMS covers them too.
	Downloads []File    `json:"downloads,omitempty"`
	Packages  []Package `json:"packages"`
	// OS is the image's distribution (since 1.2).
	OS *OS `json:"os,omitempty"`
	// Image is where the built disk was kept in the image store.
	Image *Image `json:"image,omitempty"`
	// BuildMachine is who the build machine was, and what generalize was asked to remove: what
	// a test boot's fresh-identity and no-build-user checks compare the image against, in the
	// build and in `ingot test` later (since 1.2).
	BuildMachine *BuildMachine `json:"build_machine,omitempty"`
	// Inventory names the file inventory of the final image, a sidecar (InventoryFile) that
	// ReadInventory reads (since 1.2).
	Inventory *InventoryRef `json:"inventory,omitempty"`
	// Drift summarizes the difference from the baseline the build was compared with, when it
	// was (ingot build --baseline; since 1.2).
	Drift *DriftSummary `json:"drift,omitempty"`
}

// DriftSummary is what a build's diff against its baseline found: the counts a threshold reads.
type DriftSummary struct {
	// Baseline names what the build was compared with (a directory, or image:NAME), and
	// BaselineBuild its build_id.
	Baseline      string `json:"baseline"`
	BaselineBuild string `json:"baseline_build"`
	// Counts are the diff's metrics by name ("packages.changed", "files.added", "size.growth", …).
	Counts map[string]float64 `json:"counts"`
	// Same says nothing differs beyond the noise list.
	Same bool `json:"same"`
}

// BuildMachine identifies the build machine: nothing in it is secret (the build's private keys
// never leave the build's private work dir).
type BuildMachine struct {
	// User is the build user, AuthorizedKey its (public) key.
	User          string `json:"user"`
	AuthorizedKey string `json:"authorized_key"`
	// MachineID is the build machine's /etc/machine-id.
	MachineID string `json:"machine_id"`
	// HostKeys are its SSH host public keys ("TYPE BASE64").
	HostKeys []string `json:"host_keys"`
	// DiskBytes is the build disk's size: a shrunk output is test-booted on a disk this big.
	DiskBytes int64 `json:"disk_bytes"`
	// Generalized says generalize ran; Kept lists what it was told to keep (generalize.keep).
	Generalized bool     `json:"generalized"`
	Kept        []string `json:"kept,omitempty"`
}

// Recipe is the recipe a build ran.
type Recipe struct {
	// File is the path given to the build, or "catalog:NAME" for a built-in recipe.
	File   string `json:"file"`
	SHA256 string `json:"sha256,omitempty"`
	// Inputs is the sha256 of everything that decides what the build publishes, the recipe's
	// canonical form (each step with the bytes of the files it reads, never its formatting), the
	// base it started from and ingot's output version: a build whose inputs hash the same, with
	// its outputs still as SHA256SUMS says, is up to date (since 1.1).
	Inputs string `json:"inputs_sha256,omitempty"`
}

// Input is a pinned input: the source disk, ISO or stored image.
type Input struct {
	Kind   string `json:"kind"`
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
}

// Tool is what made an image.
type Tool struct {
	IngotVersion string `json:"ingot_version"`
	IngotCommit  string `json:"ingot_commit"`
	// Driver is the hypervisor driver that ran the build machine: qemu or libvirt.
	Driver      string `json:"driver,omitempty"`
	QEMUVersion string `json:"qemu_version"`
	QemuImgVer  string `json:"qemu_img_version"`
	// Libvirt is the daemon a libvirt build ran on (its QEMU is QEMUVersion).
	Libvirt *Libvirt `json:"libvirt,omitempty"`
}

// Libvirt names the libvirt daemon a build ran on.
type Libvirt struct {
	URI     string `json:"uri"`
	Host    string `json:"host"`
	Version string `json:"version"`
	Pool    string `json:"pool"`
}

// StepTiming is how long a step took: a pipeline step, or one provisioner of the recipe.
type StepTiming struct {
	Step string `json:"step"`
	// At is where a provisioner is written in the recipe (file:line:col).
	At      string  `json:"at,omitempty"`
	Seconds float64 `json:"seconds"`
	// Waiting is the part of Seconds spent waiting on the guest or on qemu-img; the rest is
	// ingot's own work.
	Waiting float64 `json:"waiting_seconds"`
	// Restored says the step did not run: its result came from a checkpoint (since 1.1).
	Restored bool `json:"restored,omitempty"`
	// Checkpoint is the key of the checkpoint taken after the step, or restored in its place
	// (since 1.1).
	Checkpoint string `json:"checkpoint,omitempty"`
}

// File is one published file: an output, or a file a download step published.
type File struct {
	// File is the path relative to the manifest's directory, slash-separated.
	File   string `json:"file"`
	Format string `json:"format"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Tests are the test boots of an output, one per firmware it was booted under (since 1.2).
	Tests []TestBoot `json:"tests,omitempty"`
}

// TestBoot is one boot of an output and the checks it ran.
type TestBoot struct {
	// Boot is "full" (every check) or "smoke" (the bootloader reached the kernel).
	Boot     string  `json:"boot"`
	Firmware string  `json:"firmware"`
	Passed   bool    `json:"passed"`
	Seconds  float64 `json:"seconds"`
	Checks   []Check `json:"checks"`
}

// Check results.
const (
	CheckPass = "pass"
	CheckFail = "fail"
	CheckSkip = "skip"
)

// Check is one check of a test boot: a built-in one (boots, cloud-init, fresh-identity,
// no-build-user, grown) or one of the recipe's tests.
type Check struct {
	Name string `json:"name"`
	// Result is pass, fail or skip.
	Result  string  `json:"result"`
	Seconds float64 `json:"seconds"`
	// Output is what the check saw, or why it was skipped (its end, when long).
	Output string `json:"output,omitempty"`
}

// Package is one installed package in the image.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Arch is the package's architecture ("amd64", "all"; since 1.2).
	Arch string `json:"arch,omitempty"`
	// License is what the package's copyright file states (Debian: its first License: line,
	// as written, such as "GPL-2+"); empty when it states none (since 1.2).
	License string `json:"license,omitempty"`
}

// OS is the image's distribution, from its os-release (since 1.2).
type OS struct {
	ID        string `json:"id"`         // "debian"
	VersionID string `json:"version_id"` // "12"
}

// Image is where the build's disk was kept in the image store.
type Image struct {
	Name   string `json:"name"`
	Layer  string `json:"layer"`
	Parent string `json:"parent,omitempty"`
}

// Write writes m to path atomically (a synced temporary file renamed over path), stamped with
// Version, which it also sets in m so that the caller holds what the file says.
func Write(path string, m *Manifest) error {
	m.SchemaVersion = Version
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write manifest %s: %w", path, err)
	}
	if err := renameio.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write manifest %s: %w", path, err)
	}
	return nil
}

// Read reads and decodes the manifest at path (see Decode); its errors name the file.
func Read(path string) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	m, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", path, err)
	}
	return m, nil
}

// Decode reads one manifest from r. It refuses what is not one: anything but a single JSON
// object, an object without schema_version, and a major it does not know (ErrVersion). Up to
// the minor of Version, unknown fields are refused too (a typo or another file's JSON); a newer
// minor's fields are ignored, since a new minor only adds fields.
func Decode(r io.Reader) (*Manifest, error) {
	dec := json.NewDecoder(r)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not a manifest: not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a manifest: more follows the JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, errors.New("not a manifest: want a JSON object")
	}
	rawVersion, ok := fields["schema_version"]
	if !ok {
		return nil, fmt.Errorf("%w: none given: not an ingot manifest, or one written before manifests had versions (rebuild the image to get one)", ErrVersion)
	}
	var version string
	if err := json.Unmarshal(rawVersion, &version); err != nil {
		return nil, fmt.Errorf("%w: %s is not a string such as %q", ErrVersion, rawVersion, Version)
	}
	major, minor, err := parseVersion(version)
	if err != nil {
		return nil, err
	}
	knownMajor, knownMinor, _ := parseVersion(Version)
	if major != knownMajor {
		hint := "no ingot has written it"
		if major > knownMajor {
			hint = "a newer ingot wrote it: upgrade ingot to read it"
		}
		return nil, fmt.Errorf("%w %s: this ingot reads %d.x (up to %s); %s", ErrVersion, version, knownMajor, Version, hint)
	}
	var m Manifest
	full := json.NewDecoder(bytes.NewReader(raw))
	if minor <= knownMinor {
		full.DisallowUnknownFields()
	}
	if err := full.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a manifest of schema %s: %w", version, err)
	}
	return &m, nil
}

// parseVersion reads MAJOR.MINOR, both decimal.
func parseVersion(v string) (major, minor int, err error) {
	ma, mi, ok := strings.Cut(v, ".")
	major, err1 := strconv.Atoi(ma)
	minor, err2 := strconv.Atoi(mi)
	if !ok || err1 != nil || err2 != nil || !isDigits(ma) || !isDigits(mi) {
		return 0, 0, fmt.Errorf("%w: %q is not MAJOR.MINOR", ErrVersion, v)
	}
	return major, minor, nil
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// Sum is one line of SHA256SUMS.
type Sum struct {
	File   string // slash-separated, relative to the directory, cleaned
	SHA256 string // lower-case hex
	Line   int
}

// SumsProblem is a line of SHA256SUMS that is not one: its number, and what is wrong.
type SumsProblem struct {
	Line int
	Msg  string
}

// ParseSums reads SHA256SUMS as WriteSums writes it and `sha256sum -c` reads it: a line
// "HASH  PATH" per file (or "HASH *PATH", sha256sum's binary mode). A line that is not one, a
// path that would leave the directory and a path listed twice are problems, each reported and
// left out; the lines that are come back in order. The error is the reader's.
func ParseSums(r io.Reader) ([]Sum, []SumsProblem, error) {
	var out []Sum
	var bad []SumsProblem
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		hash, file, ok := strings.Cut(line, " ")
		if ok && (strings.HasPrefix(file, " ") || strings.HasPrefix(file, "*")) {
			file = file[1:]
		} else {
			ok = false
		}
		if _, err := hex.DecodeString(hash); !ok || err != nil || len(hash) != 64 || file == "" {
			bad = append(bad, SumsProblem{n, fmt.Sprintf("want \"SHA256  PATH\", got %q", line)})
			continue
		}
		if !filepath.IsLocal(filepath.FromSlash(file)) || strings.Contains(file, "\\") {
			bad = append(bad, SumsProblem{n, fmt.Sprintf("%q is not a path inside the directory", file)})
			continue
		}
		file = path.Clean(file)
		if first, dup := seen[file]; dup {
			bad = append(bad, SumsProblem{n, fmt.Sprintf("%s is listed twice (first on line %d)", file, first)})
			continue
		}
		seen[file] = n
		out = append(out, Sum{File: file, SHA256: strings.ToLower(hash), Line: n})
	}
	return out, bad, sc.Err()
}

// WriteSums writes the SHA256SUMS sidecar for files, in the form `sha256sum -c` checks: one
// "HASH  PATH" line each, paths relative to the file's directory. It is written as Write writes
// a manifest.
func WriteSums(path string, files []File) error {
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "%s  %s\n", f.SHA256, f.File)
	}
	if err := renameio.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
