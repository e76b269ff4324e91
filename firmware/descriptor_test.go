package firmware

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestList(t *testing.T) {
	fx := newFixture(t)
	tests := []struct {
		name  string
		dirs  []string
		want  []string // fixture-relative paths, in order
		descs map[string]string
	}{
		{
			name: "debian 12 as shipped",
			dirs: fx.dirs("debian12"),
			want: []string{
				"debian12/40-edk2-x86_64-secure-enrolled.json",
				"debian12/50-edk2-x86_64-secure.json",
				"debian12/60-edk2-x86_64.json",
			},
		},
		{
			name: "user over sysadmin over distribution",
			dirs: fx.dirs("overrides/user", "overrides/etc", "debian12"),
			// 40 is hidden by the user's empty file, 50 by the sysadmin's; the user's 60 hides
			// the sysadmin's; the sysadmin's 10 sorts first; README is not a descriptor.
			want: []string{
				"overrides/etc/10-local-ovmf-combined.json",
				"overrides/user/60-edk2-x86_64.json",
			},
			descs: map[string]string{"overrides/user/60-edk2-x86_64.json": "per-user OVMF build"},
		},
		{
			name: "sysadmin over distribution",
			dirs: fx.dirs("overrides/etc", "debian12"),
			want: []string{
				"overrides/etc/10-local-ovmf-combined.json",
				"debian12/40-edk2-x86_64-secure-enrolled.json",
				"overrides/etc/60-edk2-x86_64.json",
			},
			descs: map[string]string{"overrides/etc/60-edk2-x86_64.json": "sysadmin OVMF build"},
		},
		{
			name: "order of the dirs decides who overrides",
			dirs: fx.dirs("debian12", "overrides/etc"),
			want: []string{
				"overrides/etc/10-local-ovmf-combined.json",
				"debian12/40-edk2-x86_64-secure-enrolled.json",
				"debian12/50-edk2-x86_64-secure.json",
				"debian12/60-edk2-x86_64.json",
			},
		},
		{
			name: "sorted by file name across dirs",
			dirs: fx.dirs("debian12", "fedora"),
			want: []string{
				"fedora/30-edk2-ovmf-4m-qcow2-x64-sb-enrolled.json",
				"fedora/40-edk2-ovmf-4m-qcow2-x64-sb.json",
				"debian12/40-edk2-x86_64-secure-enrolled.json",
				"fedora/50-edk2-ovmf-4m-qcow2-x64-nosb.json",
				"debian12/50-edk2-x86_64-secure.json",
				"fedora/50-seabios-256k.json",
				"fedora/60-edk2-aarch64-qcow2.json",
				"fedora/60-edk2-ovmf-x64-amdsev.json",
				"fedora/60-edk2-ovmf-x64-inteltdx.json",
				"debian12/60-edk2-x86_64.json",
				"fedora/60-seabios-128k.json",
			},
		},
		{
			name: "missing dirs are skipped",
			dirs: append([]string{filepath.Join(fx.root, "no-such-dir")}, fx.dirs("debian12")...),
			want: []string{
				"debian12/40-edk2-x86_64-secure-enrolled.json",
				"debian12/50-edk2-x86_64-secure.json",
				"debian12/60-edk2-x86_64.json",
			},
		},
		{
			name: "nothing installed",
			dirs: []string{filepath.Join(fx.root, "no-such-dir")},
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			descs, err := NewFinder(WithDirs(tt.dirs...)).List()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range descs {
				got = append(got, fx.rel(t, d.Path))
				if want, ok := tt.descs[fx.rel(t, d.Path)]; ok && d.Description != want {
					t.Errorf("%s: description %q, want %q", d.Name(), d.Description, want)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("List:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestListDecodesDebianDescriptor(t *testing.T) {
	fx := newFixture(t)
	descs, err := NewFinder(WithDirs(fx.dir("debian12"))).List()
	if err != nil {
		t.Fatal(err)
	}
	d := descs[0]
	want := Descriptor{
		Path:           fx.dir("debian12") + "/40-edk2-x86_64-secure-enrolled.json",
		Description:    "UEFI firmware for x86_64, with Secure Boot and SMM, SB enabled, MS certs enrolled",
		InterfaceTypes: []string{"uefi"},
		Mapping: Mapping{
			Device:        DeviceFlash,
			Mode:          ModeSplit, // absent in the file: firmware.json says that means split
			Executable:    FlashFile{Filename: fx.fw + "/usr/share/OVMF/OVMF_CODE_4M.ms.fd", Format: "raw"},
			NVRAMTemplate: FlashFile{Filename: fx.fw + "/usr/share/OVMF/OVMF_VARS_4M.ms.fd", Format: "raw"},
		},
		Targets:  []Target{{Architecture: "x86_64", Machines: []string{"pc-q35-*"}}},
		Features: []string{"acpi-s3", "amd-sev", "enrolled-keys", "requires-smm", "secure-boot", "verbose-dynamic"},
		Tags:     []string{},
	}
	if d.Path != want.Path || d.Description != want.Description || d.Mapping != want.Mapping ||
		!slices.Equal(d.InterfaceTypes, want.InterfaceTypes) || !slices.Equal(d.Features, want.Features) ||
		len(d.Targets) != 1 || d.Targets[0].Architecture != "x86_64" || !slices.Equal(d.Targets[0].Machines, want.Targets[0].Machines) {
		t.Errorf("decoded\n%+v\nwant\n%+v", d, want)
	}
	if d.Name() != "40-edk2-x86_64-secure-enrolled.json" {
		t.Errorf("Name() = %q", d.Name())
	}
	if !d.Has(FeatureEnrolledKeys) || d.Has("acpi-s4") {
		t.Errorf("Has: enrolled-keys %v, acpi-s4 %v", d.Has(FeatureEnrolledKeys), d.Has("acpi-s4"))
	}
}

func TestListErrors(t *testing.T) {
	fx := newFixture(t)
	notADir := filepath.Join(fx.root, "file")
	if err := os.WriteFile(notADir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	hide := filepath.Join(fx.root, "hide")
	if err := os.MkdirAll(hide, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hide, "20-truncated.json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dirs []string
		want []string // substrings of the error; none: List succeeds
	}{
		{"malformed descriptor names its file", fx.dirs("broken"), []string{"20-truncated.json", "unexpected end of JSON", "empty file of the same name"}},
		{"a malformed file hidden by an empty one is fine", append([]string{hide}, fx.dirs("broken")...), nil},
		{"a dir that is a file", []string{notADir}, []string{notADir}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewFinder(WithDirs(tt.dirs...)).List()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("List succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseDescriptor(t *testing.T) {
	const targets = `"targets": [{"architecture": "x86_64", "machines": ["pc-q35-*"]}]`
	flash := func(mapping string) string {
		return `{"description": "d", "interface-types": ["uefi"], "mapping": ` + mapping + `, ` + targets + `, "features": [], "tags": []}`
	}
	const code = `"executable": {"filename": "/fw/CODE.fd", "format": "raw"}`
	const vars = `"nvram-template": {"filename": "/fw/VARS.fd", "format": "raw"}`
	tests := []struct {
		name     string
		json     string
		wantErr  string
		wantMode Mode
	}{
		{"split without mode", flash(`{"device": "flash", ` + code + `, ` + vars + `}`), "", ModeSplit},
		{"split with mode", flash(`{"device": "flash", "mode": "split", ` + code + `, ` + vars + `}`), "", ModeSplit},
		{"combined needs no template", flash(`{"device": "flash", "mode": "combined", ` + code + `}`), "", ModeCombined},
		{"stateless needs no template", flash(`{"device": "flash", "mode": "stateless", ` + code + `}`), "", ModeStateless},
		{"memory", flash(`{"device": "memory", "filename": "/fw/bios.bin"}`), "", ""},
		{"unknown device is kept, never selected", flash(`{"device": "igvm", "filename": "x"}`), "", ""},
		{"unknown fields and features are accepted", `{"interface-types": ["uefi"], "mapping": {"device": "memory", "filename": "/b", "future": 1}, ` + targets + `, "features": ["host-uefi-vars"], "new-field": true}`, "", ""},
		{"not JSON", `{`, "unexpected end of JSON input", ""},
		{"no interface types", `{"mapping": {"device": "memory", "filename": "/b"}, ` + targets + `}`, `"interface-types" is missing`, ""},
		{"no targets", `{"interface-types": ["bios"], "mapping": {"device": "memory", "filename": "/b"}}`, `"targets" is missing`, ""},
		{"target without machines", `{"interface-types": ["bios"], "mapping": {"device": "memory", "filename": "/b"}, "targets": [{"architecture": "x86_64"}]}`, `"targets"[0] needs`, ""},
		{"no device", flash(`{` + code + `}`), `no "device"`, ""},
		{"split without template", flash(`{"device": "flash", ` + code + `}`), `"nvram-template"."filename" must be an absolute path`, ""},
		{"flash without executable", flash(`{"device": "flash", "mode": "stateless"}`), `"executable"."filename" must be an absolute path`, ""},
		{"relative executable", flash(`{"device": "flash", "mode": "stateless", "executable": {"filename": "CODE.fd", "format": "raw"}}`), `not "CODE.fd"`, ""},
		{"executable without format", flash(`{"device": "flash", "mode": "stateless", "executable": {"filename": "/CODE.fd"}}`), `"executable" has no "format"`, ""},
		{"memory without filename", flash(`{"device": "memory"}`), `"mapping"."filename" must be an absolute path`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseDescriptor("/x/50-test.json", []byte(tt.json))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "/x/50-test.json") {
					t.Fatalf("error %v, want one naming the file and containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Mapping.Mode != tt.wantMode {
				t.Errorf("mode %q, want %q", d.Mapping.Mode, tt.wantMode)
			}
			if d.Path != "/x/50-test.json" {
				t.Errorf("path %q", d.Path)
			}
		})
	}
}

func TestDefaultDirs(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"XDG_CONFIG_HOME", map[string]string{"XDG_CONFIG_HOME": "/cfg", "HOME": "/home/u"},
			[]string{"/cfg/qemu/firmware", "/etc/qemu/firmware", "/usr/share/qemu/firmware"}},
		{"HOME", map[string]string{"HOME": "/home/u"},
			[]string{"/home/u/.config/qemu/firmware", "/etc/qemu/firmware", "/usr/share/qemu/firmware"}},
		{"relative XDG_CONFIG_HOME is ignored", map[string]string{"XDG_CONFIG_HOME": "cfg", "HOME": "/home/u"},
			[]string{"/home/u/.config/qemu/firmware", "/etc/qemu/firmware", "/usr/share/qemu/firmware"}},
		{"neither", nil, []string{"/etc/qemu/firmware", "/usr/share/qemu/firmware"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := defaultDirs(func(k string) string { return tt.env[k] })
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
