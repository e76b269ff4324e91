package sbom

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/ingot-build/ingot/manifest"
)

// The third-party validators: the SPDX project's tools-golang (spdxlib) for SPDX, in process,
// and, through testdata/validate/validate.cjs, CycloneDX's own JSON-schema validator
// (@cyclonedx/cyclonedx-library), packageurl-js and spdx-expression-parse from npm, which
// `make deps-test` installs. A missing install fails the tests: it is not a pass.

var validateScript = filepath.Join("testdata", "validate", "validate.cjs")

func validateSPDXDocument(doc *spdx.Document) error { return spdxlib.ValidateDocument(doc) }

func describedPackages(doc *spdx.Document) ([]common.ElementID, error) {
	return spdxlib.GetDescribedPackageIDs(doc)
}

// validationInputs are the builds both documents are validated for: the fixture, and the
// shapes a build can have besides (another base kind, an RPM distribution, nothing installed
// or output, a manifest from before the inventory had architectures and licenses).
func validationInputs() map[string]Input {
	iso := fixture()
	iso.Inputs = []manifest.Input{{Kind: "iso", URL: "https://cdimage.debian.org/debian-cd/12.8.0/amd64/iso-cd/debian-12.8.0-amd64-netinst.iso", SHA256: sumBase}}
	stored := fixture()
	stored.Inputs = []manifest.Input{{Kind: "image", URL: "image:base", SHA256: sumBase}}
	fedora := fixture()
	fedora.Packages = []manifest.Package{
		{Name: "bash", Version: "5.2.32-1.fc41", Arch: "x86_64", License: "GPL-3.0-or-later"},
		{Name: "NetworkManager", Version: "1.50.0-1.fc41", Arch: "x86_64", License: "GPL-2.0-or-later AND LGPL-2.1-or-later"},
		{Name: "tzdata", Version: "2024b-1.fc41", Arch: "noarch", License: "LicenseRef-Fedora-Public-Domain"},
		{Name: "kernel-core", Version: "6.11.4-301.fc41", Arch: "x86_64", License: "GPLv2 and Redistributable, no modification permitted"},
		{Name: "kernel-core", Version: "6.11.5-300.fc41", Arch: "x86_64", License: "GPLv2"},
	}
	empty := fixture()
	empty.Packages, empty.Outputs, empty.Inputs = nil, nil, nil
	old := fixture()
	for i := range old.Packages {
		old.Packages[i].Arch, old.Packages[i].License = "", ""
	}
	old.Tool = manifest.Tool{}
	return map[string]Input{
		"debian":       debian12(fixture()),
		"iso":          debian12(iso),
		"stored image": debian12(stored),
		"fedora":       {Manifest: fedora, Distro: "fedora", DistroVersion: "41"},
		"empty":        debian12(empty),
		"no distro":    {Manifest: old},
	}
}

// runValidator runs validate.cjs on data; it fails the test when the validators are missing.
func runValidator(t *testing.T, kind string, data []byte) (out string, valid bool) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is missing: run `make deps-test`, which installs it and the SBOM validators")
	}
	file := filepath.Join(t.TempDir(), "sbom.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, validateScript, kind, file)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return buf.String(), true
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return buf.String(), false
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		t.Fatalf("the SBOM validators are not installed: run `make deps-test`\n%s", buf.String())
	}
	t.Fatalf("%s %s %s %s: %v\n%s", node, validateScript, kind, file, err, buf.String())
	return "", false
}

// TestThirdPartyValid: every document the package writes passes the validators.
func TestThirdPartyValid(t *testing.T) {
	for name, in := range validationInputs() {
		t.Run(name, func(t *testing.T) {
			s, err := SPDX(in)
			if err != nil {
				t.Fatal(err)
			}
			if out, ok := runValidator(t, "spdx", s); !ok {
				t.Errorf("SPDX document is invalid:\n%s\n%s", out, s)
			}
			checkSPDXToolsGolang(t, s)
			c, err := CycloneDX(in)
			if err != nil {
				t.Fatal(err)
			}
			if out, ok := runValidator(t, "cyclonedx", c); !ok {
				t.Errorf("CycloneDX document is invalid:\n%s\n%s", out, c)
			}
		})
	}
}

// TestThirdPartyRejects: the validators are live, and see the mistakes this package could
// make: each broken copy of a valid document is refused, for the reason it was broken.
func TestThirdPartyRejects(t *testing.T) {
	s, err := SPDX(debian12(fixture()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := CycloneDX(debian12(fixture()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, kind string
		doc        []byte
		old, new   string
		why        string // in the validator's output
	}{
		{"debian license form", "spdx", s, `"licenseDeclared": "GPL-2.0-or-later"`, `"licenseDeclared": "GPL-2+"`, "license expression"},
		{"undeclared LicenseRef", "spdx", s, `"licenseId": "LicenseRef-public-domain"`, `"licenseId": "LicenseRef-other"`, "not declared"},
		{"purl of another version", "spdx", s, `@1:2.5.1-4?`, `@1:2.5.1-5?`, "has version"},
		{"unencoded purl", "spdx", s, `jq@1.6-2.1%2Bdeb12u3`, `jq@1.6-2.1 deb12u3`, "purl"},
		{"bad hash", "cyclonedx", c, `"content": "` + sumOut, `"content": "` + strings.Repeat("x", 64), "hash-content"},
		{"unknown property", "cyclonedx", c, `"type": "library",`, `"type": "library", "flavour": "deb",`, "additionalProperties"},
		{"unknown license id", "cyclonedx", c, `"id": "BSD-3-Clause"`, `"id": "BSD-3-clause-debian"`, "license"},
		{"bad expression", "cyclonedx", c, `"expression": "GPL-1.0-or-later OR Artistic-1.0-Perl"`, `"expression": "GPL-1+ or Artistic"`, "license expression"},
		{"purl of another package", "cyclonedx", c, `"name": "jq"`, `"name": "jq2"`, "names"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(tt.doc, []byte(tt.old)) {
				t.Fatalf("the document has no %s to break", tt.old)
			}
			broken := bytes.Replace(tt.doc, []byte(tt.old), []byte(tt.new), 1)
			out, ok := runValidator(t, tt.kind, broken)
			if ok {
				t.Fatalf("the validator took a document with %s:\n%s", tt.new, out)
			}
			if !strings.Contains(out, tt.why) {
				t.Errorf("the validator refused it, but not for %q:\n%s", tt.why, out)
			}
		})
	}
	// And tools-golang refuses a relationship to an element that is not there.
	broken := bytes.Replace(s, []byte(`"relatedSpdxElement": "SPDXRef-Package-deb-jq-amd64"`), []byte(`"relatedSpdxElement": "SPDXRef-Package-deb-jq-i386"`), 1)
	doc, err := readSPDX(broken)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateSPDXDocument(doc); err == nil {
		t.Error("tools-golang took a relationship to a package that does not exist")
	}
}

func readSPDX(data []byte) (*spdx.Document, error) { return spdxjson.Read(bytes.NewReader(data)) }
