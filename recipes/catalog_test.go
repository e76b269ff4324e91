package recipes

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// demoVars are what `make demo` passes: a local image and its real sha256.
func demoVars(t *testing.T) map[string]string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "debian-12-cloud.qcow2")
	content := []byte("not really an image")
	if err := os.WriteFile(img, content, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	return map[string]string{"image_url": "file://" + img, "image_sha256": hex.EncodeToString(sum[:])}
}

func TestCatalogLists(t *testing.T) {
	var names []string
	for _, e := range Catalog() {
		names = append(names, e.Name)
		if e.Description == "" {
			t.Errorf("%s has no description", e.Name)
		}
	}
	for _, want := range []string{"debian-12", "debian-12-arm64", "debian-13", "ubuntu-24.04", "ubuntu-24.04-server-iso", "demo"} {
		if !slices.Contains(names, want) {
			t.Errorf("catalogue %v lacks %s", names, want)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("catalogue not sorted: %v", names)
	}
	if e, ok := Lookup("debian-13"); !ok || !strings.Contains(e.Description, "trixie") {
		t.Errorf("Lookup(debian-13) = %+v, %v", e, ok)
	}
	if r, err := LoadCatalog("debian-12-arm64", nil, nil); err != nil {
		t.Errorf("debian-12-arm64: %v", err)
	} else if r.Machine.Arch != ArchAArch64 || !strings.Contains(r.Source.Disk.URL, "genericcloud-arm64") {
		t.Errorf("debian-12-arm64 builds %s from %s", r.Machine.Arch, r.Source.Disk.URL)
	}
}

// Every built-in recipe validates, under its own name, and pins a real upstream file: a dated
// https URL and a fixed digest (not a checksum file, whose content changes under the same URL).
func TestCatalogRecipesValidate(t *testing.T) {
	dated := regexp.MustCompile(`/(release-20\d{6}|20\d{6}-\d+|\d+\.\d+\.\d+)/`)
	for _, e := range Catalog() {
		t.Run(e.Name, func(t *testing.T) {
			var vars map[string]string
			if e.Name == "demo" {
				vars = demoVars(t)
			}
			r, err := LoadCatalog(e.Name, vars, nil)
			if err != nil {
				t.Fatalf("built-in recipe does not load:\n%v", err)
			}
			if r.Name != e.Name || r.File != CatalogPrefix+e.Name || r.Dir != "" || r.Description != e.Description {
				t.Errorf("name %q, file %q, dir %q, description %q", r.Name, r.File, r.Dir, r.Description)
			}
			if e.Name == "demo" {
				return
			}
			var url, sha256, sha512 string
			switch {
			case r.Source.Disk != nil:
				url, sha256, sha512 = r.Source.Disk.URL, r.Source.Disk.SHA256, r.Source.Disk.SHA512
			case r.Source.ISO != nil:
				url, sha256, sha512 = r.Source.ISO.URL, r.Source.ISO.SHA256, r.Source.ISO.SHA512
			default:
				t.Fatalf("source %+v is neither a cloud image nor an ISO", r.Source)
			}
			if !strings.HasPrefix(url, "https://") || !dated.MatchString(url) {
				t.Errorf("url %s is not a dated https URL", url)
			}
			if !(len(sha256) == 64 && isHex(sha256)) && !(len(sha512) == 128 && isHex(sha512)) {
				t.Errorf("pin sha256=%q sha512=%q is not a fixed digest", sha256, sha512)
			}
		})
	}
}

func TestCatalogUbuntuISODrivesAutoinstall(t *testing.T) {
	r, err := LoadCatalog("ubuntu-24.04-server-iso", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	iso := r.Source.ISO
	if iso == nil || iso.Kernel != "/casper/vmlinuz" || iso.Initrd != "/casper/initrd" || !strings.Contains(iso.Append, "autoinstall") {
		t.Fatalf("iso = %+v", iso)
	}
	ai, ok := r.CloudInit.UserData["autoinstall"].(map[string]any)
	if !ok || ai["version"] != int64(1) || ai["shutdown"] != "poweroff" {
		t.Errorf("autoinstall = %#v", r.CloudInit.UserData["autoinstall"])
	}
	if ssh, _ := ai["ssh"].(map[string]any); ssh["install-server"] != true {
		t.Errorf("autoinstall.ssh = %#v: ingot needs an SSH server in the installed system", ai["ssh"])
	}
}

// The demo's image is a variable: without it, both missing values are reported.
func TestCatalogDemoNeedsItsVariables(t *testing.T) {
	_, err := LoadCatalog("demo", nil, nil)
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("demo without variables: %v", err)
	}
	for i, name := range []string{"image_url", "image_sha256"} {
		if es[i].Path != "variables."+name || !strings.Contains(es[i].Hint, "--var "+name+"=") || es[i].Pos.File != "catalog:demo" {
			t.Errorf("error %d = %v", i, es[i])
		}
	}
	// From the environment, as INGOT_VAR_NAME.
	vars := demoVars(t)
	r, err := LoadCatalog("demo", nil, []string{"INGOT_VAR_image_url=" + vars["image_url"], "INGOT_VAR_image_sha256=" + vars["image_sha256"]})
	if err != nil {
		t.Fatal(err)
	}
	if r.Source.Disk.URL != vars["image_url"] || r.Source.Disk.Pin() != vars["image_sha256"] {
		t.Errorf("demo source = %+v", r.Source.Disk)
	}
}

func TestCatalogSourceRefusesPaths(t *testing.T) {
	for _, name := range []string{"", "../catalog.go", "catalog/demo", "./demo", "demo.yaml", "nonexistent"} {
		if _, ok := CatalogSource(name); ok {
			t.Errorf("CatalogSource(%q) found something", name)
		}
	}
	if data, ok := CatalogSource("demo"); !ok || !strings.Contains(string(data), "name: demo") {
		t.Errorf("CatalogSource(demo) = %q, %v", data, ok)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	local := "name: local-file\nsource: { disk: { url: https://example.org/t.qcow2, sha256: " + emptySHA256 + " } }\n"
	if err := os.WriteFile("debian-13", []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("web.yaml", []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		arg      string
		wantName string
		wantErr  string
	}{
		{arg: "debian-12", wantName: "debian-12"},                        // no such file: the catalogue
		{arg: "debian-13", wantName: "local-file"},                       // a file of that name wins
		{arg: "web.yaml", wantName: "local-file"},                        // a file
		{arg: "./debian-12", wantErr: "read recipe: open ./debian-12"},   // a path: never the catalogue
		{arg: "missing.yaml", wantErr: "read recipe: open missing.yaml"}, // a path that does not exist
		{arg: "debian12", wantErr: `debian12: no such recipe file and no built-in recipe of that name; did you mean "debian-12"?`},
		{arg: "fedora", wantErr: "(built-in: debian-12, debian-12-arm64, debian-13, demo, "},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			r, err := Resolve(tt.arg, nil, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve(%q) = %v; want an error containing %q", tt.arg, err, tt.wantErr)
				}
				return
			}
			if err != nil || r.Name != tt.wantName {
				t.Fatalf("Resolve(%q) = %v, %v; want recipe %s", tt.arg, r, err, tt.wantName)
			}
		})
	}
}
