package firmware

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	fx := newFixture(t)
	seabios := filepath.Join(fx.root, "seabios", "bios-256k.bin")
	if err := os.MkdirAll(filepath.Dir(seabios), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seabios, []byte("seabios"), 0o644); err != nil {
		t.Fatal(err)
	}
	// hide60 holds an empty 60-edk2-x86_64.json: Debian without its plain OVMF descriptor.
	hide60 := filepath.Join(fx.root, "hide60")
	if err := os.MkdirAll(hide60, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hide60, "60-edk2-x86_64.json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	type want struct {
		descriptor  string // fixture-relative; "" for QEMU's default SeaBIOS
		device      Device
		mode        Mode
		executable  string // relative to the fixture's @FW@, or absolute
		vars        string // relative to @FW@; "" for none
		format      string // of the executable
		secureBoot  bool
		requiresSMM bool
	}
	debianUEFI := want{"debian12/60-edk2-x86_64.json", DeviceFlash, ModeSplit,
		"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", "raw", false, false}
	debianSecure := want{"debian12/40-edk2-x86_64-secure-enrolled.json", DeviceFlash, ModeSplit,
		"/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd", "raw", true, true}
	defaultBIOS := want{"", DeviceMemory, "", seabios, "", "raw", false, false}
	fedoraBIOS := want{"fedora/50-seabios-256k.json", DeviceMemory, "", "/usr/share/seabios/bios-256k.bin", "", "raw", false, false}
	fedoraARM := want{"fedora/60-edk2-aarch64-qcow2.json", DeviceFlash, ModeSplit,
		"/usr/share/edk2/aarch64/QEMU_EFI-silent-pflash.qcow2", "/usr/share/edk2/aarch64/vars-template-pflash.qcow2", "qcow2", false, false}

	tests := []struct {
		name    string
		dirs    []string
		seabios string // WithSeaBIOS; the existing fixture file unless set
		kind    Kind
		arch    string
		machine string
		want    want
		wantErr []string // substrings of the error, which is ErrNotFound unless other
		other   bool     // the error is not ErrNotFound
	}{
		{name: "debian uefi q35", dirs: fx.dirs("debian12"), kind: UEFI, arch: "x86_64", machine: "q35", want: debianUEFI},
		{name: "debian uefi pc", dirs: fx.dirs("debian12"), kind: UEFI, arch: "x86_64", machine: "pc", want: debianUEFI},
		{name: "debian uefi versioned q35", dirs: fx.dirs("debian12"), kind: UEFI, arch: "x86_64", machine: "pc-q35-7.2", want: debianUEFI},
		{name: "debian uefi Go arch name", dirs: fx.dirs("debian12"), kind: UEFI, arch: "amd64", machine: "q35", want: debianUEFI},
		{name: "debian uefi without plain OVMF falls back to SB-capable, not enforcing",
			dirs: append([]string{hide60}, fx.dirs("debian12")...), kind: UEFI, arch: "x86_64", machine: "q35",
			want: want{"debian12/50-edk2-x86_64-secure.json", DeviceFlash, ModeSplit,
				"/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", "raw", false, true}},
		{name: "debian uefi without plain OVMF on pc", dirs: append([]string{hide60}, fx.dirs("debian12")...),
			kind: UEFI, arch: "x86_64", machine: "pc",
			wantErr: []string{"no uefi firmware for x86_64 machine pc", "40-edk2-x86_64-secure-enrolled.json targets x86_64 pc-q35-*", "50-edk2-x86_64-secure.json targets", "apt-get install ovmf"}},
		{name: "debian uefi-secure q35", dirs: fx.dirs("debian12"), kind: UEFISecure, arch: "x86_64", machine: "q35", want: debianSecure},
		{name: "debian uefi-secure versioned", dirs: fx.dirs("debian12"), kind: UEFISecure, arch: "x86_64", machine: "pc-q35-8.0", want: debianSecure},
		{name: "debian uefi-secure pc has no SMM build", dirs: fx.dirs("debian12"), kind: UEFISecure, arch: "x86_64", machine: "pc",
			wantErr: []string{"no uefi-secure firmware for x86_64 machine pc", "40-edk2-x86_64-secure-enrolled.json targets x86_64 pc-q35-*, not x86_64 machine pc", "60-edk2-x86_64.json lacks secure-boot, enrolled-keys, requires-smm", "apt-get install ovmf"}},
		{name: "debian uefi aarch64", dirs: fx.dirs("debian12"), kind: UEFI, arch: "aarch64", machine: "virt",
			wantErr: []string{"no uefi firmware for aarch64 machine virt", "apt-get install qemu-efi-aarch64"}},
		{name: "debian bios q35 is QEMU's default", dirs: fx.dirs("debian12"), kind: BIOS, arch: "x86_64", machine: "q35", want: defaultBIOS},
		{name: "debian bios versioned pc", dirs: fx.dirs("debian12"), kind: BIOS, arch: "x86_64", machine: "pc-i440fx-7.2", want: defaultBIOS},
		{name: "debian bios without seabios", dirs: fx.dirs("debian12"), seabios: filepath.Join(fx.root, "nope", "bios-256k.bin"),
			kind: BIOS, arch: "x86_64", machine: "q35",
			wantErr: []string{"no bios firmware for x86_64 machine q35", filepath.Join(fx.root, "nope", "bios-256k.bin") + " does not exist", "apt-get install seabios"}},
		{name: "debian bios microvm", dirs: fx.dirs("debian12"), kind: BIOS, arch: "x86_64", machine: "microvm",
			wantErr: []string{"no bios firmware for x86_64 machine microvm: no firmware descriptor in", "apt-get install seabios"}},
		{name: "fedora uefi skips enrolled and SMM builds", dirs: fx.dirs("fedora"), kind: UEFI, arch: "x86_64", machine: "q35",
			want: want{"fedora/50-edk2-ovmf-4m-qcow2-x64-nosb.json", DeviceFlash, ModeSplit,
				"/usr/share/edk2/ovmf/OVMF_CODE_4M.qcow2", "/usr/share/edk2/ovmf/OVMF_VARS_4M.qcow2", "qcow2", false, false}},
		{name: "fedora uefi-secure", dirs: fx.dirs("fedora"), kind: UEFISecure, arch: "x86_64", machine: "q35",
			want: want{"fedora/30-edk2-ovmf-4m-qcow2-x64-sb-enrolled.json", DeviceFlash, ModeSplit,
				"/usr/share/edk2/ovmf/OVMF_CODE_4M.secboot.qcow2", "/usr/share/edk2/ovmf/OVMF_VARS_4M.secboot.qcow2", "qcow2", true, true}},
		{name: "fedora bios descriptor", dirs: fx.dirs("fedora"), kind: BIOS, arch: "x86_64", machine: "q35", want: fedoraBIOS},
		{name: "fedora bios old pc: first match in file order", dirs: fx.dirs("fedora"), kind: BIOS, arch: "x86_64", machine: "pc-i440fx-1.7", want: fedoraBIOS},
		{name: "fedora aarch64 alias", dirs: fx.dirs("fedora"), kind: UEFI, arch: "aarch64", machine: "virt", want: fedoraARM},
		{name: "fedora arm64 versioned", dirs: fx.dirs("fedora"), kind: UEFI, arch: "arm64", machine: "virt-7.2", want: fedoraARM},
		{name: "overrides: local combined OVMF sorts first", dirs: fx.dirs("overrides/user", "overrides/etc", "debian12"),
			kind: UEFI, arch: "x86_64", machine: "q35",
			want: want{"overrides/etc/10-local-ovmf-combined.json", DeviceFlash, ModeCombined, "/opt/ovmf/OVMF.fd", "", "raw", false, false}},
		{name: "overrides: secure builds disabled", dirs: fx.dirs("overrides/user", "overrides/etc", "debian12"),
			kind: UEFISecure, arch: "x86_64", machine: "q35",
			wantErr: []string{"no uefi-secure firmware for x86_64 machine q35", "10-local-ovmf-combined.json lacks secure-boot", "60-edk2-x86_64.json lacks", "apt-get install ovmf"}},
		{name: "nothing installed", dirs: []string{filepath.Join(fx.root, "none")}, kind: UEFI, arch: "x86_64", machine: "q35",
			wantErr: []string{"no uefi firmware for x86_64 machine q35: no firmware descriptor in " + filepath.Join(fx.root, "none") + " offers one", "apt-get install ovmf"}},
		{name: "image removed", dirs: fx.dirs("missing"), kind: UEFI, arch: "x86_64", machine: "q35",
			wantErr: []string{"60-edk2-x86_64.json names " + filepath.Join(fx.root, "missing", "OVMF_CODE_4M.fd") + ", which cannot be used", "apt-get install ovmf"}},
		{name: "unknown arch names no package", dirs: fx.dirs("debian12"), kind: UEFI, arch: "riscv64", machine: "virt",
			wantErr: []string{"no Debian package for it is known"}},
		{name: "unknown kind", dirs: fx.dirs("debian12"), kind: "efi", arch: "x86_64", machine: "q35",
			wantErr: []string{`unknown firmware "efi"`}, other: true},
		{name: "no machine", dirs: fx.dirs("debian12"), kind: UEFI, arch: "x86_64",
			wantErr: []string{"must both be set"}, other: true},
		{name: "broken descriptor", dirs: fx.dirs("broken"), kind: UEFI, arch: "x86_64", machine: "q35",
			wantErr: []string{"select uefi firmware", "20-truncated.json"}, other: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := seabios
			if tt.seabios != "" {
				sb = tt.seabios
			}
			fw, err := NewFinder(WithDirs(tt.dirs...), WithSeaBIOS(sb)).Select(tt.kind, tt.arch, tt.machine)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Select = %+v, want an error", fw)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\ndoes not contain %q", err, w)
					}
				}
				if errors.Is(err, ErrNotFound) == tt.other {
					t.Errorf("errors.Is(err, ErrNotFound) = %v", !tt.other)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			abs := func(p string) string {
				if p == "" || strings.HasPrefix(p, fx.root) {
					return p
				}
				return fx.fw + p
			}
			w := tt.want
			if got := fx.rel(t, fw.Descriptor); got != w.descriptor {
				t.Errorf("descriptor %q, want %q", got, w.descriptor)
			}
			if fw.Kind != tt.kind || fw.Device != w.device || fw.Mode != w.mode ||
				fw.Executable != (Image{abs(w.executable), w.format}) ||
				fw.VarsTemplate.Path != abs(w.vars) ||
				fw.SecureBoot != w.secureBoot || fw.RequiresSMM != w.requiresSMM {
				t.Errorf("Select =\n%+v\nwant %+v", fw, w)
			}
			if w.vars != "" && fw.VarsTemplate.Format != w.format {
				t.Errorf("vars format %q, want %q", fw.VarsTemplate.Format, w.format)
			}
			if fw.Description == "" {
				t.Error("no description")
			}
		})
	}
}

// TestRejects checks the reasons given for passing over each kind of descriptor, one by one.
func TestRejects(t *testing.T) {
	fx := newFixture(t)
	descs, err := NewFinder(WithDirs(fx.dirs("fedora", "debian12")...)).List()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Descriptor{}
	for _, d := range descs {
		byName[d.Name()] = d
	}
	tests := []struct {
		descriptor string
		kind       Kind
		arch       string
		machine    string
		want       string // "" when it fits
	}{
		{"60-edk2-ovmf-x64-inteltdx.json", UEFI, "x86_64", "q35", "keeps no UEFI variables (stateless)"},
		{"60-edk2-ovmf-x64-amdsev.json", UEFI, "x86_64", "q35", "is mapped as memory; ingot needs UEFI on flash"},
		{"30-edk2-ovmf-4m-qcow2-x64-sb-enrolled.json", UEFI, "x86_64", "q35", "enforces Secure Boot (enrolled-keys); that is uefi-secure"},
		{"30-edk2-ovmf-4m-qcow2-x64-sb-enrolled.json", UEFISecure, "x86_64", "q35", ""},
		{"40-edk2-ovmf-4m-qcow2-x64-sb.json", UEFI, "x86_64", "q35", ""},
		{"40-edk2-ovmf-4m-qcow2-x64-sb.json", UEFISecure, "x86_64", "q35", "lacks enrolled-keys"},
		{"50-edk2-ovmf-4m-qcow2-x64-nosb.json", UEFISecure, "x86_64", "pc", "lacks secure-boot, enrolled-keys, requires-smm"},
		{"50-edk2-ovmf-4m-qcow2-x64-nosb.json", UEFI, "x86_64", "microvm", "targets x86_64 pc-i440fx-* pc-q35-*, not x86_64 machine microvm"},
		{"50-edk2-ovmf-4m-qcow2-x64-nosb.json", UEFI, "aarch64", "virt", "targets x86_64"},
		{"60-seabios-128k.json", BIOS, "x86_64", "pc", "targets x86_64 pc-i440fx-1.*"},
		{"60-seabios-128k.json", BIOS, "x86_64", "pc-i440fx-1.7", ""},
		{"60-edk2-x86_64.json", UEFI, "x86_64", "pc-i440fx-7.2", ""},
		{"50-edk2-x86_64-secure.json", UEFI, "x86_64", "pc-i440fx-7.2", "targets x86_64 pc-q35-*"},
	}
	for _, tt := range tests {
		t.Run(tt.descriptor+"/"+string(tt.kind)+"/"+tt.machine, func(t *testing.T) {
			d, ok := byName[tt.descriptor]
			if !ok {
				t.Fatalf("no fixture %s", tt.descriptor)
			}
			got := d.rejects(tt.kind, tt.arch, tt.machine)
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("rejects = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMachineMatches(t *testing.T) {
	tests := []struct {
		glob, arch, machine string
		want                bool
	}{
		{"pc-q35-*", "x86_64", "pc-q35-7.2", true},
		{"pc-q35-*", "x86_64", "q35", true},
		{"pc-q35-*", "x86_64", "pc", false},
		{"pc-q35-*", "x86_64", "pc-i440fx-7.2", false},
		{"pc-i440fx-*", "x86_64", "pc", true},
		{"pc-i440fx-*", "x86_64", "q35", false},
		{"pc-*", "x86_64", "q35", true},  // every pc-q35-X.Y starts with pc-
		{"*", "x86_64", "microvm", true}, // a glob matches any versionless name directly
		{"pc-q35-7.*", "x86_64", "pc-q35-7.2", true},
		{"pc-q35-7.*", "x86_64", "q35", false}, // the alias might be pc-q35-8.0: not every version matches
		{"pc-q35-7.2", "x86_64", "q35", false},
		{"pc-q35-?", "x86_64", "q35", false},
		{"pc-q35-*", "i386", "q35", true},
		{"pc-q35-*", "aarch64", "q35", false}, // q35 is no alias on arm
		{"virt-*", "aarch64", "virt", true},
		{"virt-*", "aarch64", "virt-7.2", true},
		{"virt-*", "x86_64", "virt", false},
		{"[", "x86_64", "q35", false}, // a malformed glob matches nothing
	}
	for _, tt := range tests {
		if got := machineMatches(tt.glob, tt.arch, tt.machine); got != tt.want {
			t.Errorf("machineMatches(%q, %q, %q) = %v, want %v", tt.glob, tt.arch, tt.machine, got, tt.want)
		}
	}
}

func TestParseKind(t *testing.T) {
	tests := []struct {
		in      string
		want    Kind
		wantErr bool
	}{
		{"bios", BIOS, false},
		{"uefi", UEFI, false},
		{"uefi-secure", UEFISecure, false},
		{"UEFI", "", true},
		{"efi", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := ParseKind(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseKind(%q) = %q, %v", tt.in, got, err)
		}
	}
}
