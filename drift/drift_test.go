package drift

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/manifest"
)

// writeBuild writes a manifest (and, when inv is not nil, its inventory) into a new directory.
func writeBuild(t testing.TB, m *manifest.Manifest, inv []manifest.Entry) string {
	t.Helper()
	dir := t.TempDir()
	if inv != nil {
		ref, err := manifest.WriteInventory(filepath.Join(dir, manifest.InventoryFile), inv)
		if err != nil {
			t.Fatal(err)
		}
		m.Inventory = &ref
	}
	if err := manifest.Write(filepath.Join(dir, "manifest.json"), m); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoad(t *testing.T) {
	inv := []manifest.Entry{dir("/etc", "0755"), file("/etc/motd", "0644", 3, "ab"), link("/bin", "usr/bin")}
	withInv := writeBuild(t, &manifest.Manifest{Name: "web", BuildID: "b1", Packages: pkgs("bash", "5.2")}, inv)
	noInv := writeBuild(t, &manifest.Manifest{Name: "web", BuildID: "b0"}, nil)
	emptyInv := writeBuild(t, &manifest.Manifest{Name: "web", BuildID: "b2"}, []manifest.Entry{})

	s, err := Load(withInv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Label != withInv || s.Manifest.BuildID != "b1" || len(s.Inventory) != 3 || s.Inventory[2].Target != "usr/bin" {
		t.Errorf("loaded %+v", s)
	}
	// The manifest's own path works too.
	if s, err := Load(filepath.Join(withInv, "manifest.json"), nil); err != nil || len(s.Inventory) != 3 {
		t.Errorf("by manifest path: %v, %d entries", err, len(s.Inventory))
	}
	if s, err := Load(noInv, nil); err != nil || s.Inventory != nil {
		t.Errorf("without inventory: %v, %v", err, s.Inventory)
	}
	if s, err := Load(emptyInv, nil); err != nil || s.Inventory == nil || len(s.Inventory) != 0 {
		t.Errorf("empty inventory: %v, %#v", err, s.Inventory)
	}

	// image:NAME goes through the resolver.
	resolve := func(name string) (string, error) {
		if name == "web" {
			return withInv, nil
		}
		return "", errors.New("no such image")
	}
	if s, err := Load("image:web", resolve); err != nil || s.Label != "image:web" || s.Manifest.BuildID != "b1" {
		t.Errorf("image:web: %v, %+v", err, s)
	}
	for _, tt := range []struct {
		arg     string
		resolve Resolver
		want    string
	}{
		{"image:nope", resolve, "image:nope: no such image"},
		{"image:", resolve, `name the stored image after "image:"`},
		{"image:web", nil, "image:web: stored images cannot be compared here"},
		{"", nil, "an empty argument"},
		{filepath.Join(noInv, "absent"), nil, "no such file or directory"},
	} {
		if _, err := Load(tt.arg, tt.resolve); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%q): %v, want %q", tt.arg, err, tt.want)
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	write := func(t *testing.T, name, content string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	damaged := writeBuild(t, &manifest.Manifest{Name: "web"}, []manifest.Entry{file("/etc/motd", "0644", 3, "ab")})
	if err := os.WriteFile(filepath.Join(damaged, manifest.InventoryFile), []byte("not zstd"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := writeBuild(t, &manifest.Manifest{Name: "web"}, []manifest.Entry{file("/etc/motd", "0644", 3, "ab")})
	if err := os.Remove(filepath.Join(missing, manifest.InventoryFile)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		want string
	}{
		{"a newer major", write(t, "manifest.json", `{"schema_version": "2.0", "name": "web"}`), "unsupported manifest schema_version 2.0"},
		{"truncated", write(t, "manifest.json", `{"schema_version": "1.2", "name": "w`), "not a manifest: not JSON"},
		{"no manifest", t.TempDir(), "read manifest: open"},
		{"a damaged inventory", damaged, "the file was changed or damaged"},
		{"a missing inventory", missing, "read inventory: open"},
		{"a relative path", writeBuild(t, &manifest.Manifest{}, []manifest.Entry{file("etc/motd", "0644", 1, "a")}), `entry 1: path "etc/motd" is not a clean absolute path`},
		{"an unclean path", writeBuild(t, &manifest.Manifest{}, []manifest.Entry{file("/etc/../motd", "0644", 1, "a")}), "is not a clean absolute path"},
		{"an unknown type", writeBuild(t, &manifest.Manifest{}, []manifest.Entry{{Path: "/x", Type: "door", Mode: "0644"}}), `/x: type "door" is none of file, dir`},
		{"a mode not octal", writeBuild(t, &manifest.Manifest{}, []manifest.Entry{file("/x", "rwxr-xr-x", 1, "a")}), `/x: mode "rwxr-xr-x" is not octal`},
		{"a path twice", writeBuild(t, &manifest.Manifest{}, []manifest.Entry{file("/x", "0644", 1, "a"), dir("/y", "0755"), dir("/x", "0755")}), "entry 3: /x is listed twice"},
		{"a mode too big", writeBuild(t, &manifest.Manifest{}, []manifest.Entry{file("/x", "17777", 1, "a")}), `/x: mode "17777" is not octal`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.dir, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestValidatePattern(t *testing.T) {
	for p, ok := range map[string]bool{
		"/opt/app/**":      true,
		"**/*.pyc":         true,
		"/etc/{a,b}-":      true,
		"/var/lib/[ab]":    true,
		"opt/app":          false,
		"":                 false,
		"/var/lib/[ab":     false,
		"/etc/{a,b":        false,
		"/usr/lib/*/cache": true,
	} {
		if err := ValidatePattern(p); (err == nil) != ok {
			t.Errorf("ValidatePattern(%q) = %v", p, err)
		}
	}
	if err := (Options{Ignore: []string{"/ok/**", "bad", "/[x"}}).Validate(); err == nil || !strings.Contains(err.Error(), `"bad"`) || !strings.Contains(err.Error(), `"/[x"`) {
		t.Errorf("Validate: %v", err)
	}
	for _, n := range DefaultNoise() {
		if err := ValidatePattern(n.Pattern); err != nil || n.Reason == "" {
			t.Errorf("default noise %q: %v, reason %q", n.Pattern, err, n.Reason)
		}
	}
}

func TestNoiseMatches(t *testing.T) {
	n := newNoise([]string{"**/__pycache__/**", "/srv/*/cache"}).matcher()
	for p, want := range map[string]bool{
		"/var/log":                            true,
		"/var/log/syslog":                     true,
		"/var/log/journal/abc/system.journal": true,
		"/var/logs":                           false,
		"/etc/machine-id":                     true,
		"/etc/machine-info":                   false,
		"/var/lib/apt/lists/partial":          true,
		"/var/lib/apt/extended_states":        false,
		"/var/lib/dpkg/status":                false,
		"/var/lib/dpkg/status-old":            true,
		"/var/cache/debconf/config.dat":       false,
		"/var/cache/debconf/config.dat-old":   true,
		"/etc/shadow-":                        true,
		"/etc/shadow":                         false,
		"/etc/passwd-":                        true,
		"/etc/ld.so.cache":                    false,
		"/var/lib/dhcp/dhclient.eth0.leases":  true,
		"/usr/bin/ls":                         false,
	} {
		if got := n.match(p); got != want {
			t.Errorf("noise %s: %v, want %v", p, got, want)
		}
	}
}

// docs/drift.md documents every metric, every default noise pattern and the JSON schema
// version, so the docs cannot fall behind the code.
func TestDocsCoverDrift(t *testing.T) {
	b, err := os.ReadFile("../docs/drift.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, m := range Metrics() {
		if !strings.Contains(doc, "`"+m.Name+"`") {
			t.Errorf("docs/drift.md does not document the metric %s", m.Name)
		}
	}
	for _, n := range DefaultNoise() {
		if !strings.Contains(doc, "`"+n.Pattern+"`") {
			t.Errorf("docs/drift.md does not list the noise pattern %s", n.Pattern)
		}
	}
	if !strings.Contains(doc, `"schema_version": "`+SchemaVersion+`"`) {
		t.Errorf("docs/drift.md does not show schema_version %s", SchemaVersion)
	}
}
