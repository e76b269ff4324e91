package bake_test

import (
	"strings"
	"testing"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/recipes"
)

// A download published with the outputs must not land on any file the build publishes there,
// whatever the outputs' options make of their names, nor on another download; Check refuses it
// at the destination's line, naming the file and what to do.
func TestCheckDownloadDestinations(t *testing.T) {
	const head = `name: t
source: { disk: { url: https://example.org/t.qcow2, sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 } }
outputs:
  - { format: raw, compress: zstd, bmap: true }
  - { format: raw, shrink: minimal }
  - { format: ova }
provision:
`
	tests := []struct {
		name  string
		steps string
		want  []string // in the error; none: Check passes
	}{
		{"the raw output's bmap", "  - file: { src: /var/log/syslog, dst: t.raw.bmap, direction: download }\n",
			[]string{`r.yaml:8:35: provision[0].file.dst: "t.raw.bmap" would overwrite t.raw.bmap, a file of outputs[0] (r.yaml:4:5); choose another name, e.g. downloads/t.raw.bmap`}},
		{"the compressed raw", "  - file: { src: /a, dst: ./t.raw.zst, direction: download }\n", []string{`"./t.raw.zst" would overwrite t.raw.zst, a file of outputs[0]`}},
		{"the shrunk raw", "  - file: { src: /a, dst: t-minimal.raw, direction: download }\n", []string{"t-minimal.raw, a file of outputs[1] (r.yaml:5:5)"}},
		{"the ova", "  - file: { src: /a, dst: t.ova, direction: download }\n", []string{"t.ova, a file of outputs[2]"}},
		{"the manifest", "  - file: { src: /a, dst: manifest.json, direction: download }\n", []string{"manifest.json, the build's manifest"}},
		{"the checksums", "  - file: { src: /a, dst: SHA256SUMS, direction: download }\n", []string{"SHA256SUMS, the build's checksum list"}},
		{"inside an output", "  - file: { src: /a, dst: t.ova/x, direction: download }\n", []string{`"t.ova/x" would need t.ova to be a directory, but it is a file of outputs[2]`}},
		{"the output dir", "  - file: { src: /a, dst: ., direction: download }\n", []string{`"." is the output directory itself`}},
		{"twice the same", "  - file: { src: /a, dst: logs/a, direction: download }\n  - file: { src: /b, dst: logs//a, direction: download }\n",
			[]string{`r.yaml:9:22: provision[1].file.dst: "logs//a" overlaps "logs/a", the destination of provision[0] at r.yaml:8:22`}},
		{"one inside another", "  - file: { src: /var/log, dst: logs, direction: download }\n  - file: { src: /b, dst: logs/b, direction: download }\n",
			[]string{`provision[1].file.dst: "logs/b" overlaps "logs"`}},
		{"apart", "  - file: { src: /a, dst: logs/t.raw.bmap, direction: download }\n  - file: { src: /b, dst: t.raw, direction: download }\n  - file: { src: /c, dst: /tmp/t.raw.zst, direction: download }\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := recipes.LoadBytes("r.yaml", []byte(head+tt.steps), "", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = bake.Check(r)
			if tt.want == nil {
				if err != nil {
					t.Errorf("Check = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check passes, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check = %v\nwant %q in it", err, w)
				}
			}
		})
	}
}

// Check refuses a driver no hypervisor has (a recipe made in code; the loader refuses it too),
// at the recipe's machine, with the names there are.
func TestCheckMachineDriver(t *testing.T) {
	r, err := recipes.LoadBytes("r.yaml", []byte(`name: t
source: { disk: { url: https://example.org/t.qcow2, sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 } }
machine: { cpus: 1 }
`), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"qemu", "libvirt"} {
		r.Machine.Driver = d
		if err := bake.Check(r); err != nil {
			t.Errorf("Check with machine.driver %s = %v", d, err)
		}
	}
	r.Machine.Driver = "vbox"
	if err := bake.Check(r); err == nil || err.Error() != `r.yaml:3:1: machine.driver "vbox": want qemu or libvirt` {
		t.Errorf("Check = %v, want the driver refused at r.yaml:3:1", err)
	}
}

// An aarch64 recipe gets every output but an OVA, whose OVF describes an x86_64 machine: Check
// refuses it at the output, saying what to write instead.
func TestCheckOVAForAArch64(t *testing.T) {
	const text = `name: t
source: { disk: { url: https://example.org/t.qcow2, sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 } }
machine: { arch: %s }
outputs:
  - { format: qcow2 }
  - { format: raw, compress: zstd, bmap: true, shrink: minimal }
  - { format: vmdk }
  - { format: ova }
`
	for _, arch := range []string{"x86_64", "aarch64"} {
		r, err := recipes.LoadBytes("r.yaml", []byte(strings.Replace(text, "%s", arch, 1)), "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = bake.Check(r)
		switch {
		case arch == "x86_64" && err != nil:
			t.Errorf("x86_64: Check = %v", err)
		case arch == "aarch64" && (err == nil || !strings.Contains(err.Error(), "r.yaml:8:5: outputs[3]: an OVA describes an x86_64 virtual machine, and this recipe builds aarch64")):
			t.Errorf("aarch64: Check = %v, want the OVA refused at r.yaml:8:5", err)
		}
	}
}
