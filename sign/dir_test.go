package sign

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"

	"github.com/ingot-build/ingot/manifest"
)

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// outputDir builds an output directory as bake publishes one: two outputs, a download in a
// subdirectory, the file inventory, the SPDX SBOM, manifest.json and SHA256SUMS, the three
// records signed with k. It returns the directory and the manifest.
func outputDir(t *testing.T, k *Key) (string, *manifest.Manifest) {
	t.Helper()
	dir := t.TempDir()
	m := &manifest.Manifest{Name: "demo", BuildID: "b1"}
	for i, name := range []string{"demo.qcow2", "demo.raw.zst"} {
		data := bytes.Repeat([]byte{byte('a' + i)}, 300000+i)
		writeFile(t, filepath.Join(dir, name), data)
		m.Outputs = append(m.Outputs, manifest.File{File: name, Format: "qcow2", Size: int64(len(data)), SHA256: sha(data)})
	}
	dl := []byte("a file a download step published\n")
	writeFile(t, filepath.Join(dir, "logs", "build.log"), dl)
	m.Downloads = []manifest.File{{File: "logs/build.log", Format: "download", Size: int64(len(dl)), SHA256: sha(dl)}}
	ref, err := manifest.WriteInventory(filepath.Join(dir, manifest.InventoryFile), []manifest.Entry{{Path: "/etc/hostname", Type: "file", Mode: "644", Size: 5}})
	if err != nil {
		t.Fatal(err)
	}
	m.Inventory = &ref
	writeSPDX(t, dir, m.Outputs)
	if err := manifest.Write(filepath.Join(dir, ManifestFile), m); err != nil {
		t.Fatal(err)
	}
	sums := append(append(m.Outputs, m.Downloads...), manifest.File{File: ref.File, SHA256: ref.SHA256})
	if err := manifest.WriteSums(filepath.Join(dir, SumsFile), sums); err != nil {
		t.Fatal(err)
	}
	signAll(t, k, dir)
	return dir, m
}

// writeSPDX writes a minimal SPDX 2.3 document that describes files, as an SBOM does.
func writeSPDX(t *testing.T, dir string, files []manifest.File) {
	t.Helper()
	type checksum struct {
		Algorithm string `json:"algorithm"`
		Value     string `json:"checksumValue"`
	}
	type file struct {
		SPDXID    string     `json:"SPDXID"`
		FileName  string     `json:"fileName"`
		Checksums []checksum `json:"checksums"`
	}
	doc := struct {
		SPDXVersion string `json:"spdxVersion"`
		Files       []file `json:"files"`
	}{SPDXVersion: "SPDX-2.3"}
	for i, f := range files {
		doc.Files = append(doc.Files, file{
			SPDXID: fmt.Sprintf("SPDXRef-File-%d", i), FileName: "./" + f.File,
			Checksums: []checksum{{"SHA1", strings.Repeat("0", 40)}, {"SHA256", f.SHA256}},
		})
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, SPDXFile), data)
}

// signAll signs the records of dir that are there with k, as a signed build does.
func signAll(t *testing.T, k *Key, dir string) {
	t.Helper()
	for _, name := range []string{SumsFile, ManifestFile, SPDXFile, CycloneDXFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			continue
		}
		if err := k.SignFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func loadTestKey(t *testing.T) (*Key, minisign.PublicKey) {
	t.Helper()
	path, pub := newKey(t, t.TempDir())
	k, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k, pub
}

func TestVerifyDirUntouched(t *testing.T) {
	k, pub := loadTestKey(t)
	dir, _ := outputDir(t, k)
	r, err := VerifyDir(context.Background(), dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("problems in an untouched build: %v", r.Problems)
	}
	want := Report{
		Dir: dir, KeyID: k.ID(), Signed: []string{SumsFile, ManifestFile, SPDXFile},
		Summed: 4, Outputs: 2, Downloads: 1, Inventory: true, SBOM: SPDXFile,
	}
	if got := *r; fmt.Sprint(got.Signed) != fmt.Sprint(want.Signed) || got.Summed != want.Summed ||
		got.Outputs != want.Outputs || got.Downloads != want.Downloads || !got.Inventory || got.SBOM != want.SBOM || got.KeyID != want.KeyID {
		t.Errorf("report %+v, want %+v", got, want)
	}
	if r.SummedBytes < 600000 {
		t.Errorf("SummedBytes %d: the outputs were not all read", r.SummedBytes)
	}
}

// Every way an output directory can be wrong is a problem of its own, that names the file and
// what is wrong with it; nothing else is reported.
func TestVerifyDirProblems(t *testing.T) {
	rewriteSums := func(t *testing.T, dir string, edit func(string) string) {
		data, err := os.ReadFile(filepath.Join(dir, SumsFile))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, SumsFile), []byte(edit(string(data))))
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string, m *manifest.Manifest, k, other *Key)
		want   []error  // one problem each, in order
		say    []string // in the problems' messages, all together
	}{
		{
			name: "an output with one byte flipped",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, _, _ *Key) {
				flipByte(t, filepath.Join(dir, "demo.raw.zst"), 4096)
			},
			want: []error{ErrTampered},
			say:  []string{"demo.raw.zst: sha256 differs", "lists sha256 " + outputSHA(1), "the file has " + sha(flipped(1))},
		},
		{
			name: "SHA256SUMS edited to match the flipped byte",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, _, _ *Key) {
				flipByte(t, filepath.Join(dir, "demo.raw.zst"), 4096)
				rewriteSums(t, dir, func(s string) string { return strings.Replace(s, outputSHA(1), sha(flipped(1)), 1) })
			},
			want: []error{ErrBadSignature, ErrInconsistent},
			say:  []string{"SHA256SUMS: bad signature", "demo.raw.zst: records disagree: manifest.json gives sha256 " + outputSHA(1) + ", SHA256SUMS lists " + sha(flipped(1))},
		},
		{
			name: "signatures from another key",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, _, other *Key) {
				signAll(t, other, dir)
			},
			want: []error{ErrWrongKey, ErrWrongKey, ErrWrongKey},
			say:  []string{"SHA256SUMS: bad signature: signed by another key", "manifest.json: bad signature", "sbom.spdx.json: bad signature"},
		},
		{
			name: "manifest.json edited",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, _, _ *Key) {
				m.Name = "evil"
				if err := manifest.Write(filepath.Join(dir, ManifestFile), m); err != nil {
					t.Fatal(err)
				}
			},
			want: []error{ErrBadSignature},
			say:  []string{"manifest.json: bad signature: it does not match manifest.json.minisig"},
		},
		{
			name: "manifest.json replaced by another file",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, _, _ *Key) {
				writeFile(t, filepath.Join(dir, ManifestFile), []byte("<html>\n"))
			},
			want: []error{ErrBadSignature, ErrMalformed},
			say:  []string{"manifest.json: bad signature", "manifest.json: malformed: not a manifest: not JSON"},
		},
		{
			name: "a signature missing",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, _, _ *Key) {
				os.Remove(filepath.Join(dir, "sbom.spdx.json.minisig"))
			},
			want: []error{ErrNoSignature},
			say:  []string{"sbom.spdx.json: no signature: sbom.spdx.json.minisig is missing"},
		},
		{
			name: "a CycloneDX SBOM without its signature",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, _, _ *Key) {
				writeFile(t, filepath.Join(dir, CycloneDXFile), []byte(`{"bomFormat":"CycloneDX"}`))
			},
			want: []error{ErrNoSignature},
			say:  []string{"sbom.cdx.json: no signature"},
		},
		{
			name: "a signature of a file that is not there",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, k, _ *Key) {
				p := filepath.Join(dir, "provenance.json")
				writeFile(t, p, []byte("{}"))
				if err := k.SignFile(p); err != nil {
					t.Fatal(err)
				}
				os.Remove(p)
			},
			want: []error{ErrMissing},
			say:  []string{"provenance.json: missing: provenance.json.minisig is a signature of nothing"},
		},
		{
			name: "an output removed",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, _, _ *Key) {
				os.Remove(filepath.Join(dir, "demo.qcow2"))
			},
			want: []error{ErrMissing},
			say:  []string{"demo.qcow2: missing: SHA256SUMS lists it (line 1)"},
		},
		{
			name: "an output the SBOM gives another sha256",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, k, _ *Key) {
				writeSPDX(t, dir, []manifest.File{m.Outputs[0], {File: "demo.raw.zst", SHA256: strings.Repeat("e", 64)}})
				signAll(t, k, dir)
			},
			want: []error{ErrInconsistent},
			say:  []string{"demo.raw.zst: records disagree: manifest.json gives sha256 " + outputSHA(1) + ", sbom.spdx.json gives " + strings.Repeat("e", 64)},
		},
		{
			name: "an output the SBOM does not describe",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, k, _ *Key) {
				writeSPDX(t, dir, m.Outputs[:1])
				signAll(t, k, dir)
			},
			want: []error{ErrInconsistent},
			say:  []string{"demo.raw.zst: records disagree: manifest.json lists it as an output, sbom.spdx.json does not describe it"},
		},
		{
			name: "an output and the inventory left out of SHA256SUMS",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, k, _ *Key) {
				if err := manifest.WriteSums(filepath.Join(dir, SumsFile), m.Outputs[1:]); err != nil {
					t.Fatal(err)
				}
				signAll(t, k, dir)
			},
			want: []error{ErrInconsistent, ErrInconsistent, ErrInconsistent},
			say:  []string{"demo.qcow2: records disagree: manifest.json lists it as an output, SHA256SUMS does not list it", "logs/build.log", "inventory.jsonl.zst"},
		},
		{
			name: "a path in SHA256SUMS that leaves the directory",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, k, _ *Key) {
				rewriteSums(t, dir, func(s string) string {
					return s + outputSHA(0) + "  ../demo.qcow2\n" + outputSHA(0) + "  /etc/passwd\n"
				})
				signAll(t, k, dir)
			},
			want: []error{ErrMalformed, ErrMalformed},
			say:  []string{`SHA256SUMS:5: malformed: "../demo.qcow2" is not a path inside the directory`, `SHA256SUMS:6: malformed: "/etc/passwd"`},
		},
		{
			name: "an output that is a symlink out of the directory",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, _, _ *Key) {
				outside := filepath.Join(t.TempDir(), "demo.qcow2")
				if err := os.Rename(filepath.Join(dir, "demo.qcow2"), outside); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(outside, filepath.Join(dir, "demo.qcow2")); err != nil {
					t.Fatal(err)
				}
			},
			want: []error{ErrMalformed},
			say:  []string{"demo.qcow2: malformed: a symlink that leads out of the directory"},
		},
		{
			name: "a malformed SHA256SUMS line",
			mutate: func(t *testing.T, dir string, m *manifest.Manifest, k, _ *Key) {
				rewriteSums(t, dir, func(s string) string { return s + "not a line\n" + outputSHA(0) + "  demo.qcow2\n" })
				signAll(t, k, dir)
			},
			want: []error{ErrMalformed, ErrMalformed},
			say:  []string{`SHA256SUMS:5: malformed: want "SHA256  PATH", got "not a line"`, "SHA256SUMS:6: malformed: demo.qcow2 is listed twice (first on line 1)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, pub := loadTestKey(t)
			other, _ := loadTestKey(t)
			dir, m := outputDir(t, k)
			tt.mutate(t, dir, m, k, other)
			r, err := VerifyDir(context.Background(), dir, pub)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Problems) != len(tt.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(r.Problems), len(tt.want), joinErrs(r.Problems))
			}
			for i, want := range tt.want {
				if want != nil && !errors.Is(r.Problems[i], want) {
					t.Errorf("problem %d %q is not %v", i, r.Problems[i], want)
				}
			}
			all := joinErrs(r.Problems)
			for _, s := range tt.say {
				if !strings.Contains(all, s) {
					t.Errorf("the problems do not say %q:\n%s", s, all)
				}
			}
		})
	}
}

// outputSHA is the sha256 of output i of outputDir, and flipped its content with the byte
// mutations flip.
func outputSHA(i int) string { return sha(bytes.Repeat([]byte{byte('a' + i)}, 300000+i)) }

func flipped(i int) []byte {
	data := bytes.Repeat([]byte{byte('a' + i)}, 300000+i)
	data[4096] ^= 0x01
	return data
}

func joinErrs(errs []error) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString(e.Error() + "\n")
	}
	return b.String()
}

func TestVerifyDirNotAnOutputDir(t *testing.T) {
	_, pub := loadTestKey(t)
	file := filepath.Join(t.TempDir(), "f")
	writeFile(t, file, nil)
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "none"), file} {
		if _, err := VerifyDir(context.Background(), dir, pub); !errors.Is(err, ErrNotOutputDir) {
			t.Errorf("VerifyDir(%s) = %v, want ErrNotOutputDir", dir, err)
		}
	}
}

func TestVerifyDirCancelled(t *testing.T) {
	k, pub := loadTestKey(t)
	dir, _ := outputDir(t, k)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := VerifyDir(ctx, dir, pub); !errors.Is(err, context.Canceled) {
		t.Errorf("VerifyDir with a cancelled context = %v, want context.Canceled", err)
	}
}
