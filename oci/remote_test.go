package oci

import (
	"context"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"

	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/ingot-build/ingot/manifest"
)

func TestPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		host        string
		insecure    []string
		plain, warn bool
	}{
		{"127.0.0.1:5000", nil, true, false},
		{"127.8.9.1", nil, true, false},
		{"localhost:5000", nil, true, false},
		{"LOCALHOST", nil, true, false},
		{"[::1]:5000", nil, true, false},
		{"registry.example:5000", nil, false, false},
		{"10.0.0.5:5000", nil, false, false},
		{"localhost.example.com", nil, false, false}, // a name is not loopback because it says so
		{"127.0.0.1.nip.io:5000", nil, false, false},
		{"registry.example:5000", []string{"registry.example:5000"}, true, true},
		{"registry.example:5000", []string{"registry.example"}, true, true}, // a host covers its ports
		{"registry.example:5000", []string{"registry.example:5001"}, false, false},
		{"other.example", []string{"registry.example"}, false, false},
	} {
		plain, warn := PlainHTTP(tc.host, tc.insecure)
		if plain != tc.plain || warn != tc.warn {
			t.Errorf("PlainHTTP(%q, %q) = %v, %v; want %v, %v", tc.host, tc.insecure, plain, warn, tc.plain, tc.warn)
		}
	}
}

func TestCheckInsecure(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"registry.example", true},
		{"registry.example:5000", true},
		{"10.1.2.3:80", true},
		{"http://registry.example", false},
		{"registry.example/v2", false},
		{"user@registry.example", false},
		{"", false},
	} {
		if err := CheckInsecure([]string{tc.host}); (err == nil) != tc.ok {
			t.Errorf("CheckInsecure(%q) = %v, want ok %v", tc.host, err, tc.ok)
		}
	}
}

// TestCredentials resolves credentials from the environment and from Docker config files, in
// that order, and checks that the source it reports never holds the secret.
func TestCredentials(t *testing.T) {
	const host = "registry.example:5000"
	dockerDir := t.TempDir()
	writeFile(t, filepath.Join(dockerDir, "config.json"), []byte(`{"auths":{"registry.example:5000":{"auth":"`+
		base64.StdEncoding.EncodeToString([]byte("dockeruser:dockersecret"))+`"}}}`))
	home := t.TempDir()
	writeFile(t, filepath.Join(home, ".docker", "config.json"), []byte(`{"auths":{"registry.example:5000":{"username":"homeuser","password":"homesecret"}}}`))
	empty := t.TempDir()
	for _, tc := range []struct {
		name     string
		env      map[string]string
		want     auth.Credential
		source   string // a part of the reported source
		wantErr  bool
		otherReg bool // ask for another registry
	}{
		{name: "environment", env: map[string]string{EnvUser: "envuser", EnvPassword: "envsecret", "DOCKER_CONFIG": dockerDir},
			want: auth.Credential{Username: "envuser", Password: "envsecret"}, source: EnvUser},
		{name: "environment is for the registry pushed to only", env: map[string]string{EnvUser: "envuser", EnvPassword: "envsecret"},
			otherReg: true, source: EnvUser},
		{name: "user without password", env: map[string]string{EnvUser: "envuser", "DOCKER_CONFIG": dockerDir}, wantErr: true},
		{name: "password without user", env: map[string]string{EnvPassword: "envsecret"}, wantErr: true},
		{name: "DOCKER_CONFIG", env: map[string]string{"DOCKER_CONFIG": dockerDir, "HOME": home},
			want: auth.Credential{Username: "dockeruser", Password: "dockersecret"}, source: filepath.Join(dockerDir, "config.json")},
		{name: "HOME", env: map[string]string{"HOME": home},
			want: auth.Credential{Username: "homeuser", Password: "homesecret"}, source: filepath.Join(home, ".docker", "config.json")},
		{name: "Docker config without this registry", env: map[string]string{"HOME": home}, otherReg: true, source: "Docker config"},
		{name: "no config at all", env: map[string]string{"HOME": empty}, source: "anonymous"},
		{name: "no HOME", env: map[string]string{}, source: "anonymous"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Remote{Getenv: func(k string) string { return tc.env[k] }}
			cred, source, err := r.Credentials(host)
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				for _, v := range tc.env {
					if strings.Contains(err.Error(), v) && strings.Contains(v, "secret") {
						t.Errorf("the error holds the secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(source, tc.source) || strings.Contains(source, "secret") {
				t.Errorf("source %q, want it to name %q and hold no secret", source, tc.source)
			}
			want := tc.want
			ask := host
			if tc.otherReg {
				ask, want = "other.example", auth.EmptyCredential
			}
			var got auth.Credential
			if cred != nil {
				if got, err = cred(context.Background(), ask); err != nil {
					t.Fatal(err)
				}
			}
			if got != want {
				t.Errorf("credential for %s: user %q, password set %v; want user %q", ask, got.Username, got.Password != "", want.Username)
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in                       string
		registry, repo, tag, dgs string
		bad                      bool
	}{
		{in: "oci://127.0.0.1:5000/ingot/demo:v1", registry: "127.0.0.1:5000", repo: "ingot/demo", tag: "v1"},
		{in: "oci://reg.example/demo@sha256:" + strings.Repeat("a", 64), registry: "reg.example", repo: "demo", dgs: "sha256:" + strings.Repeat("a", 64)},
		{in: "127.0.0.1:5000/demo:v1", bad: true},
		{in: "docker://reg/demo:v1", bad: true},
		{in: "oci://reg.example", bad: true},
		{in: "oci://reg.example/Demo:v1", bad: true},
		{in: "oci://reg.example/demo@sha256:abc", bad: true},
	} {
		r, err := ParseRef(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseRef(%q) took it", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRef(%q): %v", tc.in, err)
			continue
		}
		tag := r.Reference.Reference
		if tc.dgs != "" {
			tag = ""
		}
		if r.Registry != tc.registry || r.Repository != tc.repo || tag != tc.tag || r.Digest() != tc.dgs {
			t.Errorf("ParseRef(%q) = %+v", tc.in, r)
		}
	}
}

func TestMediaTypes(t *testing.T) {
	for format, want := range map[string]string{
		"qcow2":   "application/vnd.ingot.disk.v1.qcow2",
		"vmdk":    "application/vnd.ingot.disk.v1.vmdk",
		"raw.zst": "application/vnd.ingot.disk.v1.raw+zstd",
		"raw.xz":  "application/vnd.ingot.disk.v1.raw+xz",
		"bmap":    "application/vnd.ingot.disk.v1.bmap+xml",
		"ova":     "application/vnd.ingot.disk.v1.ova+tar",
		"Odd/Fmt": "application/vnd.ingot.disk.v1.odd-fmt",
	} {
		if got := DiskMediaType(format); got != want {
			t.Errorf("DiskMediaType(%q) = %q, want %q", format, got, want)
		}
	}
	for name, want := range map[string]string{
		"SHA256SUMS": MediaTypeSums, "x/SHA256SUMS.minisig": MediaTypeMinisig, "sbom.cdx.json": MediaTypeCycloneDX,
		"inventory.jsonl.zst": MediaTypeInventory, "notes.txt": MediaTypeFile,
	} {
		if got, _ := recordMediaType(name); got != want {
			t.Errorf("recordMediaType(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestPlatformOf(t *testing.T) {
	pkgs := func(arches ...string) []manifest.Package {
		var out []manifest.Package
		for _, a := range arches {
			out = append(out, manifest.Package{Name: "p", Arch: a})
		}
		return out
	}
	for _, tc := range []struct {
		arches     []string
		arch, vari string
	}{
		{[]string{"amd64", "all", "all", "all"}, "amd64", ""},
		{[]string{"arm64", "arm64", "amd64"}, "arm64", ""},
		{[]string{"armhf"}, "arm", "v7"},
		{[]string{"ppc64el"}, "ppc64le", ""},
	} {
		p := platformOf(&manifest.Manifest{Packages: pkgs(tc.arches...)})
		if p.OS != "linux" || p.Architecture != tc.arch || p.Variant != tc.vari {
			t.Errorf("platformOf(%v) = %+v", tc.arches, p)
		}
	}
}

func TestParseSums(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{h + "  a.qcow2\n" + h + " *b/c.raw\n", true},
		{h + " a.qcow2\n", false},
		{h + "  ../etc/passwd\n", false},
		{h + "  /abs\n", false},
		{h[:10] + "  a\n", false},
		{h + "  a\n" + h + "  ./a\n", false},
	} {
		_, err := parseSums(strings.NewReader(tc.in), "SHA256SUMS")
		if (err == nil) != tc.ok {
			t.Errorf("parseSums(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}
