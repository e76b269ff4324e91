package recipes

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// emptySHA256 is the sha256 of an empty file: a real digest for fixtures that point at no real
// download.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// writeRecipe writes recipe.yaml and the given files into a fresh directory and returns the
// recipe's path.
func writeRecipe(t *testing.T, yaml string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "recipe.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// minimal is the smallest valid recipe; tests append to it.
const minimal = `name: t
source:
  disk: { url: https://example.org/t.qcow2, sha256: ` + emptySHA256 + ` }
`

func TestLoadValid(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		files map[string]string
		vars  map[string]string
		env   []string
		check func(t *testing.T, r *Recipe)
	}{
		{
			name: "defaults",
			yaml: minimal,
			check: func(t *testing.T, r *Recipe) {
				want := Machine{Arch: HostArch(), CPUs: 2, MemoryMiB: 2048, Firmware: "uefi", Accel: "auto", Driver: "qemu", Pos: Pos{File: r.File, Line: 1, Col: 1}}
				if !reflect.DeepEqual(r.Machine, want) {
					t.Errorf("machine = %+v, want %+v", r.Machine, want)
				}
				if r.SSH != (SSH{User: "ingot", Timeout: 10 * time.Minute}) {
					t.Errorf("ssh = %+v", r.SSH)
				}
				if !r.Generalize.Enabled || len(r.Generalize.Keep) != 0 {
					t.Errorf("generalize = %+v, want enabled", r.Generalize)
				}
				if len(r.Outputs) != 1 || r.Outputs[0].Format != "qcow2" || r.Outputs[0].Compress != "none" {
					t.Errorf("outputs = %+v, want one plain qcow2", r.Outputs)
				}
				if r.CloudInit.SeedFormat != "iso" || r.CloudInit.UserData != nil {
					t.Errorf("cloud_init = %+v", r.CloudInit)
				}
				if r.Source.Disk.Pin() != emptySHA256 || r.Source.Disk.Format != "" {
					t.Errorf("disk = %+v", r.Source.Disk)
				}
			},
		},
		{
			name: "machine sizes both spellings",
			yaml: minimal + "machine: { cpus: 4, memory: 1.5G, disk: 20GiB, firmware: bios, accel: tcg, driver: libvirt, qemu_args: [[-device, virtio-rng-pci], [-smbios, 'type=1,serial=x']] }\n",
			check: func(t *testing.T, r *Recipe) {
				m := r.Machine
				if m.CPUs != 4 || m.MemoryMiB != 1536 || m.DiskBytes != 20*GiB || m.Firmware != "bios" || m.Accel != "tcg" || m.Driver != "libvirt" {
					t.Errorf("machine = %+v", m)
				}
				if want := [][]string{{"-device", "virtio-rng-pci"}, {"-smbios", "type=1,serial=x"}}; !reflect.DeepEqual(m.QemuArgs, want) {
					t.Errorf("qemu_args = %q, want %q", m.QemuArgs, want)
				}
			},
		},
		{
			name: "every provisioner, short and long forms",
			yaml: minimal + `provision:
  - shell: apt-get update
  - shell: { script: scripts/setup.sh, env: { LEVEL: 2, NAME: "x y", ON: true }, sudo: false, timeout: 5m }
  - file: { src: files/app.conf, dst: /etc/app.conf, mode: "0640", owner: root:adm }
  - file: { src: files, dst: /srv/files }
  - reboot: {}
  - reboot:
  - reboot: { timeout: 3m }
  - wait_cloud_init: {}
  - wait_cloud_init:
  - file: { src: /var/log/syslog, dst: logs/syslog, direction: download }
`,
			files: map[string]string{"scripts/setup.sh": "#!/bin/sh\n", "files/app.conf": "x\n"},
			check: func(t *testing.T, r *Recipe) {
				kinds := []string{}
				for _, s := range r.Provision {
					kinds = append(kinds, s.Kind)
				}
				want := []string{"shell", "shell", "file", "file", "reboot", "reboot", "reboot", "wait_cloud_init", "wait_cloud_init", "file"}
				if !reflect.DeepEqual(kinds, want) {
					t.Fatalf("kinds = %v, want %v", kinds, want)
				}
				p := r.Provision
				if !reflect.DeepEqual(*p[0].Shell, Shell{Inline: "apt-get update", Sudo: true}) {
					t.Errorf("short shell = %+v", p[0].Shell)
				}
				sh := p[1].Shell
				if sh.Script != filepath.Join(r.Dir, "scripts/setup.sh") || sh.Sudo || sh.Timeout != 5*time.Minute ||
					!reflect.DeepEqual(sh.Env, map[string]string{"LEVEL": "2", "NAME": "x y", "ON": "true"}) {
					t.Errorf("long shell = %+v", sh)
				}
				if f := p[2].File; *f != (File{Src: filepath.Join(r.Dir, "files/app.conf"), Dst: "/etc/app.conf", Mode: "0640", Owner: "root:adm", Direction: "upload"}) {
					t.Errorf("upload = %+v", f)
				}
				if f := p[3].File; f.Src != filepath.Join(r.Dir, "files") {
					t.Errorf("directory upload src = %q", f.Src)
				}
				if p[4].Reboot.Timeout != 10*time.Minute || p[5].Reboot.Timeout != 10*time.Minute || p[6].Reboot.Timeout != 3*time.Minute {
					t.Errorf("reboot timeouts %v %v %v", p[4].Reboot.Timeout, p[5].Reboot.Timeout, p[6].Reboot.Timeout)
				}
				if p[7].WaitCloudInit == nil || p[8].WaitCloudInit == nil {
					t.Errorf("wait_cloud_init steps have no value")
				}
				if f := p[9].File; *f != (File{Src: "/var/log/syslog", Dst: "logs/syslog", Direction: "download"}) {
					t.Errorf("download = %+v", f)
				}
				// Each step knows its line, for "recipe.yaml:14: shell step failed".
				for i, s := range p {
					if s.Pos.Line != 5+i || s.Pos.Col != 5 || s.Pos.File != r.File {
						t.Errorf("provision[%d] at %s, want line %d col 5", i, s.Pos, 5+i)
					}
				}
			},
		},
		{
			name: "generalize forms",
			yaml: minimal + "generalize: { keep: [ssh-host-keys, logs] }\n",
			check: func(t *testing.T, r *Recipe) {
				if !r.Generalize.Enabled || !reflect.DeepEqual(r.Generalize.Keep, []string{"ssh-host-keys", "logs"}) {
					t.Errorf("generalize = %+v", r.Generalize)
				}
			},
		},
		{
			name: "generalize false",
			yaml: minimal + "generalize: false\n",
			check: func(t *testing.T, r *Recipe) {
				if r.Generalize.Enabled {
					t.Errorf("generalize = %+v, want disabled", r.Generalize)
				}
			},
		},
		{
			name: "outputs with their defaults",
			yaml: minimal + `outputs:
  - { format: qcow2, compress: zstd }
  - { format: vmdk }
  - { format: raw, compress: xz, bmap: true, shrink: minimal }
  - { format: vhdx }
  - { format: ova }
`,
			check: func(t *testing.T, r *Recipe) {
				want := []Output{
					{Format: "qcow2", Compress: "zstd"},
					{Format: "vmdk", Subformat: "streamOptimized"},
					{Format: "raw", Compress: "xz", Bmap: true, Shrink: "minimal"},
					{Format: "vhdx"},
					{Format: "ova"},
				}
				for i := range r.Outputs {
					r.Outputs[i].Pos = Pos{}
				}
				if !reflect.DeepEqual(r.Outputs, want) {
					t.Errorf("outputs = %+v\nwant %+v", r.Outputs, want)
				}
			},
		},
		{
			name: "cloud-init data keeps YAML types and substitutes variables",
			yaml: `name: t
variables: { tz: UTC }
source: { disk: { url: https://example.org/t.qcow2, sha256: ` + emptySHA256 + ` } }
cloud_init:
  user_data:
    timezone: ${var.tz}
    packages: [nginx, "vim"]
    package_update: true
    write_files: [ { path: /etc/x, content: "$${var.tz} stays", permissions: "0644" } ]
    runcmd: [ "echo ${HOME}" ]
    swap: { size: 0, maxsize: 1.5 }
    base: &b { a: 1 }
    copy: *b
  network_config: { version: 2, ethernets: { eth0: { dhcp4: true } } }
  seed_format: vfat
`,
			check: func(t *testing.T, r *Recipe) {
				want := map[string]any{
					"timezone":       "UTC",
					"packages":       []any{"nginx", "vim"},
					"package_update": true,
					"write_files":    []any{map[string]any{"path": "/etc/x", "content": "${var.tz} stays", "permissions": "0644"}},
					"runcmd":         []any{"echo ${HOME}"},
					"swap":           map[string]any{"size": int64(0), "maxsize": 1.5},
					"base":           map[string]any{"a": int64(1)},
					"copy":           map[string]any{"a": int64(1)},
				}
				if !reflect.DeepEqual(r.CloudInit.UserData, want) {
					t.Errorf("user_data = %#v\nwant %#v", r.CloudInit.UserData, want)
				}
				if r.CloudInit.NetworkConfig["version"] != int64(2) || r.CloudInit.SeedFormat != "vfat" {
					t.Errorf("cloud_init = %+v", r.CloudInit)
				}
				if p, ok := r.PosOf("cloud_init.user_data.packages[1]"); !ok || p.Line != 7 {
					t.Errorf("PosOf(cloud_init.user_data.packages[1]) = %v, %v; want line 7", p, ok)
				}
			},
		},
		{
			name: "iso source with defaults",
			yaml: `name: t
source:
  iso: { url: https://example.org/i.iso, sha256: "sha256:` + strings.ToUpper(emptySHA256) + `", kernel: /casper/vmlinuz, initrd: /casper/initrd, append: autoinstall }
`,
			check: func(t *testing.T, r *Recipe) {
				iso := r.Source.ISO
				if iso.SHA256 != emptySHA256 || iso.Kernel != "/casper/vmlinuz" || iso.InstallTimeout != time.Hour || iso.BootWait != 0 {
					t.Errorf("iso = %+v", iso)
				}
				if r.Machine.DiskBytes != 16*GiB {
					t.Errorf("an ISO build's disk = %d, want the 16GiB default", r.Machine.DiskBytes)
				}
			},
		},
		{
			name: "iso with boot keys gets a boot wait",
			yaml: "name: t\nsource:\n  iso: { url: https://example.org/i.iso, sha256: " + emptySHA256 + ", boot_keys: [\"<wait5>\", \"e<down><end> autoinstall<f10>\"] }\n",
			check: func(t *testing.T, r *Recipe) {
				if iso := r.Source.ISO; iso.BootWait != 10*time.Second || len(iso.BootKeys) != 2 {
					t.Errorf("iso = %+v", iso)
				}
			},
		},
		{
			name: "sha512 pin and checksum files",
			yaml: `name: t
source:
  disk:
    url: images/base.qcow2
    sha512: file:sums/SHA512SUMS
`,
			files: map[string]string{"images/base.qcow2": "", "sums/SHA512SUMS": ""},
			check: func(t *testing.T, r *Recipe) {
				d := r.Source.Disk
				if d.URL != filepath.Join(r.Dir, "images/base.qcow2") || d.SHA512 != "file:"+filepath.Join(r.Dir, "sums/SHA512SUMS") || d.SHA256 != "" {
					t.Errorf("disk = %+v", d)
				}
				if d.Pin() != "sha512:file:"+filepath.Join(r.Dir, "sums/SHA512SUMS") {
					t.Errorf("Pin() = %q", d.Pin())
				}
			},
		},
		{
			name: "image source",
			yaml: "name: t\nsource: { image: debian-12-web }\n",
			check: func(t *testing.T, r *Recipe) {
				if r.Source.Image == nil || r.Source.Image.Name != "debian-12-web" || r.Machine.DiskBytes != 0 {
					t.Errorf("source = %+v", r.Source)
				}
			},
		},
		{
			name: "variables typed through strings",
			yaml: `name: web-${var.version}
variables: { version: "1.2", cpus: 2, mem: 1GiB, fw: bios, keep_logs: "false", wait: 30s }
source: { disk: { url: https://example.org/t.qcow2, sha256: ` + emptySHA256 + ` } }
machine: { cpus: "${var.cpus}", memory: "${var.mem}", firmware: "${var.fw}" }
ssh: { timeout: "${var.wait}" }
provision:
  - shell: { inline: "echo ${var.version}", sudo: "${var.keep_logs}" }
`,
			vars: map[string]string{"cpus": "6"},
			env:  []string{"INGOT_VAR_mem=3GiB", "PATH=/bin"},
			check: func(t *testing.T, r *Recipe) {
				if r.Name != "web-1.2" || r.Machine.CPUs != 6 || r.Machine.MemoryMiB != 3072 || r.Machine.Firmware != "bios" || r.SSH.Timeout != 30*time.Second {
					t.Errorf("recipe = %q %+v %+v", r.Name, r.Machine, r.SSH)
				}
				if sh := r.Provision[0].Shell; sh.Inline != "echo 1.2" || sh.Sudo {
					t.Errorf("shell = %+v", sh)
				}
				want := map[string]string{"version": "1.2", "cpus": "6", "mem": "3GiB", "fw": "bios", "keep_logs": "false", "wait": "30s"}
				if !reflect.DeepEqual(r.Variables, want) {
					t.Errorf("variables = %v, want %v", r.Variables, want)
				}
			},
		},
		{
			name: "anchors and aliases",
			yaml: minimal + `machine: &m { cpus: 3 }
provision:
  - shell: &cmd "echo hi"
  - shell: *cmd
`,
			check: func(t *testing.T, r *Recipe) {
				if r.Machine.CPUs != 3 || r.Provision[1].Shell.Inline != "echo hi" {
					t.Errorf("machine %+v, provision %+v", r.Machine, r.Provision)
				}
			},
		},
		{
			name:  "explicit string tag",
			yaml:  minimal + "provision:\n  - file: { src: f, dst: /f, mode: !!str 0600 }\n",
			files: map[string]string{"f": ""},
			check: func(t *testing.T, r *Recipe) {
				if m := r.Provision[0].File.Mode; m != "0600" {
					t.Errorf("mode = %q, want 0600 as written", m)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeRecipe(t, tt.yaml, tt.files)
			r, err := Load(path, tt.vars, tt.env)
			if err != nil {
				t.Fatalf("Load:\n%v", err)
			}
			if r.File != path || r.Dir != filepath.Dir(path) {
				t.Errorf("File, Dir = %q, %q", r.File, r.Dir)
			}
			tt.check(t, r)
		})
	}
}

// Variables: --var beats INGOT_VAR_NAME beats the default, and the escape writes a literal.
// "$${" is read left to right, so "$$${var.v}" is a "$" and then the escape.
func TestVariablePriority(t *testing.T) {
	yaml := `name: t
variables: { v: default }
description: "${var.v} $${var.v} $$${var.v} ${HOME} $x"
source: { disk: { url: https://example.org/t.qcow2, sha256: ` + emptySHA256 + ` } }
`
	tests := []struct {
		name string
		vars map[string]string
		env  []string
		want string
	}{
		{"default", nil, nil, "default ${var.v} $${var.v} ${HOME} $x"},
		{"environment", nil, []string{"INGOT_VAR_v=env"}, "env ${var.v} $${var.v} ${HOME} $x"},
		{"later environment entry wins", nil, []string{"INGOT_VAR_v=first", "INGOT_VAR_v=second"}, "second ${var.v} $${var.v} ${HOME} $x"},
		{"flag beats environment", map[string]string{"v": "flag"}, []string{"INGOT_VAR_v=env"}, "flag ${var.v} $${var.v} ${HOME} $x"},
		{"empty value is a value", map[string]string{"v": ""}, nil, " ${var.v} $${var.v} ${HOME} $x"},
		{"other names ignored", map[string]string{"other": "x"}, []string{"INGOT_VAR_V=upper"}, "default ${var.v} $${var.v} ${HOME} $x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := LoadBytes("r.yaml", []byte(yaml), "", tt.vars, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if r.Description != tt.want {
				t.Errorf("description = %q, want %q", r.Description, tt.want)
			}
		})
	}
}

func TestUndeclaredVars(t *testing.T) {
	a := &Recipe{Variables: map[string]string{"x": "1"}}
	b := &Recipe{Variables: map[string]string{"y": "1"}}
	got := UndeclaredVars(map[string]string{"x": "", "y": "", "zz": "", "aa": ""}, a, b)
	if !reflect.DeepEqual(got, []string{"aa", "zz"}) {
		t.Errorf("UndeclaredVars = %v, want [aa zz]", got)
	}
}

// A recipe's errors are all reported, each with its position and path; the golden corpus
// covers the messages, this covers the structure.
func TestLoadErrorsAreStructured(t *testing.T) {
	_, err := LoadBytes("r.yaml", []byte("name: t\nsource: {}\nmachine: { cpus: 0, memroy: 1G }\n"), "", nil, nil)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	type short struct {
		line, col int
		path      string
	}
	var got []short
	for _, e := range es {
		got = append(got, short{e.Pos.Line, e.Pos.Col, e.Path})
	}
	want := []short{{2, 1, "source"}, {3, 18, "machine.cpus"}, {3, 21, "machine.memroy"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors at %+v, want %+v\n%v", got, want, err)
	}
	if !strings.Contains(es[2].Hint, `did you mean "memory"?`) {
		t.Errorf("unknown key hint = %q", es[2].Hint)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil, nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "read recipe: ") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// Relative paths are relative to the recipe file, not to the working directory.
func TestRelativePathsFollowTheRecipe(t *testing.T) {
	path := writeRecipe(t, minimal+"provision:\n  - shell: { script: s.sh }\n", map[string]string{"s.sh": "#!/bin/sh\n"})
	t.Chdir(t.TempDir())
	r, err := Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Provision[0].Shell.Script; got != filepath.Join(filepath.Dir(path), "s.sh") || !filepath.IsAbs(got) {
		t.Errorf("script = %q", got)
	}
	// The same recipe given by a relative path resolves the same way.
	t.Chdir(filepath.Dir(filepath.Dir(path)))
	r, err = Load(filepath.Join(filepath.Base(filepath.Dir(path)), "recipe.yaml"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Provision[0].Shell.Script; got != filepath.Join(filepath.Dir(path), "s.sh") {
		t.Errorf("script via a relative recipe path = %q", got)
	}
}

// Document markers and empty documents around a recipe do not matter; a second recipe does.
func TestDocumentMarkers(t *testing.T) {
	base := "name: t\nsource: { image: a }\n"
	tests := []struct {
		yaml    string
		wantErr string
	}{
		{"---\n" + base, ""},
		{base + "...\n", ""},
		{base + "---\n", ""},
		{base + "---\n# only a comment\n", ""},
		{base + "---\n" + base, "x.yaml:4:1: a recipe is one YAML document; this file has 2"},
		{"---\n# nothing\n", "x.yaml:1:1: the recipe is empty"},
	}
	for _, tt := range tests {
		_, err := LoadBytes("x.yaml", []byte(tt.yaml), "", nil, nil)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tt.yaml, err)
		case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
			t.Errorf("%q: got %v, want %q", tt.yaml, err, tt.wantErr)
		}
	}
}

// Aliases are expanded where they are used, so nested ones must not blow up memory or time.
func TestAliasExpansionIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(minimal + "cloud_init:\n  user_data:\n    l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "    l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	_, err := LoadBytes("r.yaml", []byte(b.String()), "", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "expands to more than 100000 values") {
		t.Fatalf("a billion laughs: %v", err)
	}
	// A self-referencing alias is a nesting error, not a stack overflow.
	_, err = LoadBytes("r.yaml", []byte(minimal+"cloud_init:\n  user_data:\n    a: &a [x, *a]\n"), "", nil, nil)
	if err == nil || err.Error() != "r.yaml:6:15: cloud_init.user_data.a[1]: alias *a refers to a value that contains it" {
		t.Fatalf("a self-referencing alias: %v", err)
	}
}

// Editors on Windows save UTF-8 with a byte-order mark. The recipe loads, and positions on its
// first line count from the first character after the mark, as editors show them.
func TestLoadByteOrderMark(t *testing.T) {
	r, err := Load("testdata/encoding/ok-bom.yaml", nil, nil)
	if err != nil {
		t.Fatalf("a recipe with a byte-order mark: %v", err)
	}
	if r.Name != "ok-bom" {
		t.Errorf("name = %q, want ok-bom", r.Name)
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"first key", "\ufeffname: Bad\nsource: { image: a }\n", `x.yaml:1:7: name: "Bad" is not a valid name`},
		{"later on line 1", "\ufeff{ name: t, source: { image: a }, cpus: 2 }\n", "x.yaml:1:34: cpus: unknown key"},
		{"syntax error on line 1", "\ufeffname: t\n source: { image: a }\n", "x.yaml:2:2: YAML: mapping value is not allowed"},
		{"line 2", "\ufeffname: t\nsource: { image: a, cpus: 2 }\n", "x.yaml:2:21: source.cpus: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes("x.yaml", []byte(tt.yaml), "", nil, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("got %v, want %q…", err, tt.want)
			}
		})
	}
}

// A file that is not UTF-8 text is called what it is, before the YAML parser makes something
// odd of it.
func TestLoadNotText(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write([]byte(minimal)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	iso := append(make([]byte, 0x8000), "\x01CD001\x01"...)
	mbr := make([]byte, 1024)
	mbr[510], mbr[511] = 0x55, 0xAA
	utf16le := []byte{0xFF, 0xFE}
	for _, u := range utf16.Encode([]rune(minimal)) {
		utf16le = append(utf16le, byte(u), byte(u>>8))
	}
	var utf16be []byte // and no byte-order mark
	for _, u := range utf16.Encode([]rune(minimal)) {
		utf16be = append(utf16be, byte(u>>8), byte(u))
	}
	// Longer than what Load reads before judging, so the end is judged by LoadBytes.
	long := minimal + strings.Repeat("# "+strings.Repeat("x", 97)+"\n", 700)

	const (
		notYAML = "the recipe is not a text YAML file: it looks like "
		utf8ize = "save it as UTF-8 (in Notepad: Save As, Encoding: UTF-8)"
	)
	tests := []struct {
		name string
		file string // in testdata/encoding; or
		data string
		want string // how the error starts after the file name; "" if the file loads
	}{
		{name: "qcow2 image", file: "image.qcow2", want: ":1:1: " + notYAML + "a qcow2 disk image; " + imageHint},
		{name: "random binary", file: "random.bin", want: ":3:33: " + notYAML + "binary data (a NUL byte at offset 631); name the recipe file (YAML text)"},
		{name: "gzip", data: gz.String(), want: ":1:1: " + notYAML + "gzip-compressed data; " + archiveHint},
		{name: "ISO", data: string(iso), want: ":1:1: " + notYAML + "an ISO 9660 image; " + imageHint},
		{name: "raw disk", data: string(mbr), want: ":1:1: " + notYAML + "a raw disk image (it has a boot sector); " + imageHint},
		{name: "NUL in text", data: "name: t\x00\n", want: ":1:8: " + notYAML + "binary data (a NUL byte at offset 7); name the recipe file (YAML text)"},
		{name: "NUL past the head", data: long + "\x00", want: ":704:1: " + notYAML + "binary data (a NUL byte at offset " + strconv.Itoa(len(long)) + "); name the recipe file (YAML text)"},
		{name: "UTF-16 with BOM", data: string(utf16le), want: ":1:1: the recipe is UTF-16 text, not UTF-8; " + utf8ize},
		{name: "UTF-16BE without BOM", data: string(utf16be), want: ":1:1: the recipe is UTF-16 text, not UTF-8; " + utf8ize},
		{name: "Latin-1", data: "name: t\n# gr\xf6\xdfe\n", want: ":2:5: the recipe is not UTF-8 text: the byte 0xF6 at offset 12 is not valid UTF-8; " + utf8ize + "; it may have been written as Latin-1 or Windows-1252"},
		{name: "Latin-1 after a BOM", data: "\ufeff# \xe9t\xe9\n", want: ":1:3: the recipe is not UTF-8 text: the byte 0xE9 at offset 5 is not valid UTF-8; " + utf8ize + "; it may have been written as Latin-1 or Windows-1252"},
		// A character cut in two by the end of the head is not an error.
		{name: "long text", data: minimal + strings.Repeat("#", sniffLen-len(minimal)-1) + "é\n"},
		// Signatures apply only to what is not text: a recipe may start with "BZh".
		{name: "text that starts like bzip2", data: "BZh: 1\n", want: ":1:1: BZh: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join("testdata/encoding", tt.file)
			if tt.file == "" {
				path = writeRecipe(t, tt.data, nil)
			}
			_, err := Load(path, nil, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %v (%T) is not Errors", err, err)
			}
			if got, _ := strings.CutPrefix(es[0].Error(), path); !strings.HasPrefix(got, tt.want) {
				t.Errorf("got  %s\nwant %s…", got, tt.want)
			}
		})
	}
}

// A directory named as the recipe says so, and names the recipes in it.
func TestLoadDirectory(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		hint  string // with DIR for the directory
	}{
		{"two recipes", []string{"web.yaml", "base.yml", "notes.txt", "sub/x.yaml"}, "name one recipe file in it: DIR/base.yml, DIR/web.yaml"},
		{"one recipe", []string{"web.yaml"}, "name the recipe file in it: DIR/web.yaml"},
		{"none", []string{"notes.txt"}, "name the recipe file (a .yaml file); this directory has none"},
		{"many", []string{"a.yaml", "b.yaml", "c.yaml", "d.yaml", "e.yaml", "f.yaml", "g.yaml"}, "name one recipe file in it: DIR/a.yaml, DIR/b.yaml, DIR/c.yaml, DIR/d.yaml, DIR/e.yaml, (and 2 more)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), []byte(minimal), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(dir, nil, nil)
			want := dir + ": is a directory, not a recipe file; " + strings.ReplaceAll(tt.hint, "DIR", dir)
			if err == nil || err.Error() != want {
				t.Errorf("got  %v\nwant %s", err, want)
			}
		})
	}
}

// A line indented deeper than the key above it is read by YAML as more of that key's value, and
// the parser reports the value's line. The error names the line to fix and says why.
func TestLoadMisindented(t *testing.T) {
	const src = "source: { image: a }\n"
	tests := []struct {
		name, yaml, want string
	}{
		{
			name: "mapping key one space deeper",
			yaml: src + "machine:\n  cpus: 2\n   memory: 2GiB\n",
			want: `x.yaml:4:4: YAML: mapping value is not allowed in this context; "memory" is indented deeper than "cpus" on line 3 (column 4, not 3), so YAML reads it as more of the value of cpus; start the keys of one mapping in the same column`,
		},
		{
			name: "several lines deeper",
			yaml: src + "description: one\n  two\n  three\n   name: t\n",
			want: `x.yaml:5:4: YAML: mapping value is not allowed in this context; "name" is indented deeper than "description" on line 2 (column 4, not 1), so YAML reads it as more of the value of description; start the keys of one mapping in the same column`,
		},
		{
			name: "top-level key",
			yaml: "name: t\n " + src,
			want: `x.yaml:2:2: YAML: mapping value is not allowed in this context; "source" is indented deeper than "name" on line 1 (column 2, not 1), so YAML reads it as more of the value of name; start the keys of one mapping in the same column`,
		},
		{
			name: "second key of a step",
			yaml: "name: t\n" + src + "provision:\n  - shell: apt-get update\n     sudo: false\n",
			want: `x.yaml:5:6: YAML: mapping value is not allowed in this context; "sudo" is indented deeper than "shell" on line 4 (column 6, not 5), so YAML reads it as more of the value of shell; start the keys of one mapping in the same column`,
		},
		{
			name: "CRLF line ends",
			yaml: strings.ReplaceAll(src+"machine:\n  cpus: 2\n   memory: 2GiB\n", "\n", "\r\n"),
			want: `x.yaml:4:4: YAML: mapping value is not allowed in this context; "memory" is indented deeper`,
		},
		{
			name: "after a comment",
			yaml: src + "machine:\n  cpus: 2\n  # more\n   memory: 2GiB\n",
			want: `x.yaml:5:4: YAML: value is not allowed in this context. map key-value is pre-defined; "memory" is indented deeper than "cpus" on line 3 (column 4, not 3)`,
		},
		{
			name: "less deep than the key above",
			yaml: src + "machine:\n    cpus: 2\n  memory: 2GiB\n",
			want: `x.yaml:4:3: YAML: value is not allowed in this context; check this line's indentation`,
		},
		{
			name: "a colon in a plain value",
			yaml: "name: t\n" + src + "provision:\n  - shell: echo a: b\n",
			want: `x.yaml:4:12: YAML: mapping value is not allowed in this context; quote a value that contains ": ", e.g. shell: 'echo a: b'`,
		},
		{
			name: "tab",
			yaml: src + "machine:\n\tcpus: 2\n",
			want: `x.yaml:3:1: YAML: found character '\t' that cannot start any token; indent with spaces, not tabs`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes("x.yaml", []byte(tt.yaml), "", nil, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("got  %v\nwant %s…", err, tt.want)
			}
		})
	}
}

// A digest of the wrong length is called that, even when the length is odd: hex.DecodeString
// calls any odd length invalid, which made a digest one digit short "not hexadecimal".
func TestLoadPinDigits(t *testing.T) {
	sha512 := strings.Repeat(emptySHA256, 2)
	tests := []struct {
		name, pin, want string
	}{
		{"sha256 one short", "sha256: " + emptySHA256[:63], "source.disk.sha256: has 63 hex digits, not 64; a sha256 has 64 hex digits: one digit short?"},
		{"sha256 one short, prefixed", "sha256: sha256:" + emptySHA256[:63], "source.disk.sha256: has 63 hex digits, not 64; a sha256 has 64 hex digits: one digit short?"},
		{"sha256 one over", "sha256: " + emptySHA256 + "0", "source.disk.sha256: has 65 hex digits, not 64; a sha256 has 64 hex digits: one digit too many?"},
		{"sha512 one short", "sha512: " + sha512[:127], "source.disk.sha512: has 127 hex digits, not 128; a sha512 has 128 hex digits: one digit short?"},
		{"odd length md5-ish", "sha256: " + emptySHA256[:33], "source.disk.sha256: has 33 hex digits, not 64; a sha256 has 64 hex digits"},
		{"a letter O for a zero", "sha256: " + emptySHA256[:16] + "O" + emptySHA256[17:], `is not hexadecimal: 'O' (character 17) is not a hex digit`},
		{"a space", `sha256: "` + emptySHA256[:8] + " " + emptySHA256[8:63] + `"`, `is not hexadecimal: ' ' (character 9) is not a hex digit`},
		{"odd-length digest of another algorithm", "sha256: md5:" + emptySHA256[:31], "source.disk.sha256: md5 digests are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := "name: t\nsource:\n  disk:\n    url: https://example.org/t.qcow2\n    " + tt.pin + "\n"
			_, err := LoadBytes("x.yaml", []byte(yaml), "", nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got  %v\nwant …%s…", err, tt.want)
			}
		})
	}
}

// A directory named without a slash (`ingot build recipes`) is not taken for a catalogue name:
// the error says it is a directory and names the recipes in it.
func TestResolveDirectory(t *testing.T) {
	parent := t.TempDir()
	if err := os.MkdirAll(filepath.Join(parent, "web", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "web", "web.yaml"), []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(parent)
	_, err := Resolve("web", nil, nil)
	if want := "web: is a directory, not a recipe file; name the recipe file in it: web/web.yaml"; err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

// dir_mode is for trees: on a file upload it is refused, with what to use instead.
func TestDirModeOnAFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.conf"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := minimal + "provision:\n  - file: { src: app.conf, dst: /etc/app.conf, dir_mode: \"0755\" }\n"
	_, err := LoadBytes("r.yaml", []byte(src), dir, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "provision[0].file.dir_mode: ") || !strings.Contains(err.Error(), "use mode: for a file") {
		t.Errorf("dir_mode on a file: %v", err)
	}
}
