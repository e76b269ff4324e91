package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sample() *Manifest {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	return &Manifest{
		Name: "web", BuildID: "b1", Started: at, Finished: at.Add(time.Minute),
		Recipe:       Recipe{File: "web.yaml", SHA256: "ab"},
		Inputs:       []Input{{Kind: "disk", URL: "https://example.org/d.qcow2", SHA256: "cd"}},
		Tool:         Tool{IngotVersion: "v1", Driver: "libvirt", Libvirt: &Libvirt{URI: "qemu:///system"}},
		Firmware:     "uefi",
		Steps:        []StepTiming{{Step: "boot", Seconds: 2, Waiting: 1.5}},
		Provisioners: []StepTiming{{Step: "provision[0] shell", At: "web.yaml:9:5", Seconds: 1}},
		Outputs:      []File{{File: "web.qcow2", Format: "qcow2", Size: 10, SHA256: "ef"}},
		Downloads:    []File{{File: "logs/a.log", Format: "download", Size: 1, SHA256: "01"}},
		Packages:     []Package{{Name: "bash", Version: "5.2"}},
		Image:        &Image{Name: "web", Layer: "l1", Parent: "l0"},
	}
}

// What Write writes, Read gives back, stamped with Version.
func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manifest.json")
	m := sample()
	if err := Write(path, m); err != nil {
		t.Fatal(err)
	}
	if m.SchemaVersion != Version {
		t.Errorf("Write left SchemaVersion %q, want %q", m.SchemaVersion, Version)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Read = %+v\nwant %+v", got, m)
	}
	data, _ := os.ReadFile(path)
	for _, field := range []string{`"schema_version": "1.3"`, `"build_id": "b1"`, `"waiting_seconds": 1.5`, `"qemu_img_version"`} {
		if !strings.Contains(string(data), field) {
			t.Errorf("manifest.json has no %s:\n%s", field, data)
		}
	}
}

// Decode takes any minor of the major it knows and refuses everything else, saying why.
func TestDecode(t *testing.T) {
	tests := []struct {
		name, json string
		wantErr    string // empty: decodes
		version    bool   // the error is ErrVersion
	}{
		{"this version", `{"schema_version": "1.0", "name": "web"}`, "", false},
		{"a newer minor, with a field this one lacks", `{"schema_version": "1.7", "name": "web", "sbom": {"x": 1}}`, "", false},
		{"an unknown field at a known minor", `{"schema_version": "1.0", "nmae": "web"}`, `unknown field "nmae"`, false},
		{"a newer major", `{"schema_version": "2.0", "name": "web"}`, "schema_version 2.0: this ingot reads 1.x (up to 1.3); a newer ingot wrote it: upgrade ingot", true},
		{"an older major", `{"schema_version": "0.9"}`, "schema_version 0.9: this ingot reads 1.x (up to 1.3); no ingot has written it", true},
		{"no version", `{"name": "web", "outputs": []}`, "none given: not an ingot manifest", true},
		{"a number for a version", `{"schema_version": 1}`, `1 is not a string such as "1.3"`, true},
		{"a version without a minor", `{"schema_version": "1"}`, `"1" is not MAJOR.MINOR`, true},
		{"a signed minor", `{"schema_version": "1.+1"}`, `is not MAJOR.MINOR`, true},
		{"a list", `[{"schema_version": "1.0"}]`, "want a JSON object", false},
		{"null", `null`, "want a JSON object", false},
		{"two objects", `{"schema_version": "1.0"} {}`, "more follows", false},
		{"not JSON", "QFI\xfb\x00\x00\x00\x03", "not JSON", false},
		{"empty", ``, "not JSON", false},
		{"a wrong type", `{"schema_version": "1.0", "outputs": {}}`, "cannot unmarshal", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(strings.NewReader(tt.json))
			if tt.wantErr == "" {
				if err != nil || m.Name != "web" {
					t.Errorf("Decode = %+v, %v; want the manifest of web", m, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Decode error = %v, want %q in it", err, tt.wantErr)
			}
			if errors.Is(err, ErrVersion) != tt.version {
				t.Errorf("errors.Is(%v, ErrVersion) = %v, want %v", err, !tt.version, tt.version)
			}
		})
	}
}

// Read names the file in its errors, so a user knows which manifest is refused.
func TestReadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.WriteFile(path, []byte(`{"schema_version": "3.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Read(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "3.1") || !errors.Is(err, ErrVersion) {
		t.Errorf("Read = %v, want ErrVersion naming %s and 3.1", err, path)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read of a missing file = %v, want os.ErrNotExist", err)
	}
}

// SHA256SUMS is in the form sha256sum -c checks, files in subdirectories included.
func TestWriteSums(t *testing.T) {
	dir := t.TempDir()
	var files []File
	for name, content := range map[string]string{"a.qcow2": "disk", "logs/b.log": "log"} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(content))
		files = append(files, File{File: name, SHA256: hex.EncodeToString(sum[:])})
	}
	if err := WriteSums(filepath.Join(dir, "SHA256SUMS"), files); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || strings.Count(string(out), ": OK") != len(files) {
		t.Errorf("%s: %v\n%s", cmd, err, out)
	}
}
