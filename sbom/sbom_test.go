package sbom

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"

	"github.com/ingot-build/ingot/manifest"
)

var (
	sumOut  = strings.Repeat("1", 64)
	sumOut2 = strings.Repeat("2", 64)
	sumBase = strings.Repeat("3", 64)
)

// fixture is a Debian build's manifest with the package and license forms the mapping has to
// get right: a '+' and an epoch in versions, DEP-5 names, an "or" of two, a "with" exception
// SPDX does not list, none at all.
func fixture() *manifest.Manifest {
	return &manifest.Manifest{
		Name:     "demo",
		BuildID:  "demo-20260101T120000-abcd1234",
		Started:  time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
		Finished: time.Date(2026, 1, 1, 12, 5, 7, 999_000_000, time.UTC),
		Tool:     manifest.Tool{IngotVersion: "v1.2.3", IngotCommit: "0123abc"},
		Inputs: []manifest.Input{{Kind: "disk", SHA256: sumBase,
			URL: "https://cloud.debian.org/images/cloud/bookworm/20260101-1/debian-12-genericcloud-amd64-20260101-1.qcow2"}},
		Outputs: []manifest.File{
			{File: "demo.raw", Format: "raw", Size: 2 << 30, SHA256: sumOut2},
			{File: "demo.qcow2", Format: "qcow2", Size: 1 << 30, SHA256: sumOut},
		},
		Packages: []manifest.Package{
			{Name: "jq", Version: "1.6-2.1+deb12u3", Arch: "amd64", License: "BSD-3-clause"},
			{Name: "attr", Version: "1:2.5.1-4", Arch: "amd64", License: "GPL-2+"},
			{Name: "libssl3", Version: "3.0.15-1~deb12u1", Arch: "amd64", License: "Apache-2.0"},
			{Name: "perl-base", Version: "5.36.0-7+deb12u1", Arch: "amd64", License: "GPL-1+ or Artistic"},
			{Name: "wget", Version: "1.21.3-1+b2", Arch: "amd64", License: "GPL-3+ with OpenSSL exception"},
			{Name: "base-files", Version: "12.4+deb12u8", Arch: "amd64", License: ""},
			{Name: "tzdata", Version: "2024b-0+deb12u1", Arch: "all", License: "public-domain"},
			{Name: "libstdc++6", Version: "12.2.0-14", Arch: "amd64", License: "GPL-3+ with GCC-exception-3.1"},
		},
	}
}

func debian12(m *manifest.Manifest) Input {
	return Input{Manifest: m, Distro: "debian", DistroVersion: "12"}
}

func TestPURL(t *testing.T) {
	for _, tt := range []struct {
		name    string
		distro  string
		version string
		p       manifest.Package
		want    string
	}{
		{"plus is encoded", "debian", "12", manifest.Package{Name: "jq", Version: "1.6-2.1+deb12u3", Arch: "amd64"},
			"pkg:deb/debian/jq@1.6-2.1%2Bdeb12u3?arch=amd64&distro=debian-12"},
		{"epoch stays in the version, colon unencoded", "debian", "12", manifest.Package{Name: "attr", Version: "1:2.3-1", Arch: "amd64"},
			"pkg:deb/debian/attr@1:2.3-1?arch=amd64&distro=debian-12"},
		{"tilde and epoch", "debian", "12", manifest.Package{Name: "libssl3", Version: "2:3.0.15-1~deb12u1", Arch: "amd64"},
			"pkg:deb/debian/libssl3@2:3.0.15-1~deb12u1?arch=amd64&distro=debian-12"},
		{"plus in the name", "debian", "12", manifest.Package{Name: "libstdc++6", Version: "12.2.0-14", Arch: "amd64"},
			"pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64&distro=debian-12"},
		{"arch all", "debian", "12", manifest.Package{Name: "tzdata", Version: "2024b-0+deb12u1", Arch: "all"},
			"pkg:deb/debian/tzdata@2024b-0%2Bdeb12u1?arch=all&distro=debian-12"},
		{"no distro: debian, no distro qualifier", "", "", manifest.Package{Name: "jq", Version: "1.6", Arch: "amd64"},
			"pkg:deb/debian/jq@1.6?arch=amd64"},
		{"no version id: no distro qualifier", "debian", "", manifest.Package{Name: "jq", Version: "1.6", Arch: "amd64"},
			"pkg:deb/debian/jq@1.6?arch=amd64"},
		{"no arch", "debian", "12", manifest.Package{Name: "jq", Version: "1.6"},
			"pkg:deb/debian/jq@1.6?distro=debian-12"},
		{"ubuntu", "ubuntu", "24.04", manifest.Package{Name: "curl", Version: "8.5.0-2ubuntu10.6", Arch: "amd64"},
			"pkg:deb/ubuntu/curl@8.5.0-2ubuntu10.6?arch=amd64&distro=ubuntu-24.04"},
		{"rpm distribution, case kept", "fedora", "41", manifest.Package{Name: "NetworkManager", Version: "1.50.0-1.fc41", Arch: "x86_64"},
			"pkg:rpm/fedora/NetworkManager@1.50.0-1.fc41?arch=x86_64&distro=fedora-41"},
		{"deb names lowercased", "debian", "12", manifest.Package{Name: "Foo", Version: "1"},
			"pkg:deb/debian/foo@1?distro=debian-12"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := purlOf(Input{Distro: tt.distro, DistroVersion: tt.version}, tt.p)
			if got != tt.want {
				t.Errorf("purl = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLicense(t *testing.T) {
	for _, tt := range []struct {
		raw, want string
		cdxID     string // the CycloneDX license id, when it is a single one
	}{
		{"", "", ""},
		{"GPL-2+", "GPL-2.0-or-later", "GPL-2.0-or-later"},
		{"GPL-2", "GPL-2.0-only", "GPL-2.0-only"},
		{"GPL-3.0+", "GPL-3.0-or-later", "GPL-3.0-or-later"},
		{"LGPL-2.1+", "LGPL-2.1-or-later", "LGPL-2.1-or-later"},
		{"LGPL-2", "LGPL-2.0-only", "LGPL-2.0-only"},
		{"AGPL-3+", "AGPL-3.0-or-later", "AGPL-3.0-or-later"},
		{"GFDL-1.3+", "GFDL-1.3-or-later", "GFDL-1.3-or-later"},
		{"GFDL-NIV-1.2+", "GFDL-1.2-no-invariants-or-later", "GFDL-1.2-no-invariants-or-later"},
		{"GPLv2+", "GPL-2.0-or-later", "GPL-2.0-or-later"},
		{"GPL-2.0-only", "GPL-2.0-only", "GPL-2.0-only"},
		{"BSD-3-clause", "BSD-3-Clause", "BSD-3-Clause"},
		{"BSD-2-clause", "BSD-2-Clause", "BSD-2-Clause"},
		{"Expat", "MIT", "MIT"},
		{"MIT", "MIT", "MIT"},
		{"Apache-2.0", "Apache-2.0", "Apache-2.0"},
		{"Apache-2", "Apache-2.0", "Apache-2.0"},
		{"MPL-2.0+", "MPL-2.0+", ""},
		{"zlib", "Zlib", "Zlib"},
		{"ISC", "ISC", "ISC"},
		{"CC0", "CC0-1.0", "CC0-1.0"},
		{"Artistic", "Artistic-1.0-Perl", "Artistic-1.0-Perl"},
		{"Artistic-2.0", "Artistic-2.0", "Artistic-2.0"},
		{"Perl", "Artistic-1.0-Perl OR GPL-1.0-or-later", ""},
		{"GPL-1+ or Artistic", "GPL-1.0-or-later OR Artistic-1.0-Perl", ""},
		{"GPL-2+ | BSD-3-clause", "GPL-2.0-or-later OR BSD-3-Clause", ""},
		{"LGPL-2.1+ and GPL-2+", "LGPL-2.1-or-later AND GPL-2.0-or-later", ""},
		{"GPL-2+ or Artistic, and BSD-3-clause", "(GPL-2.0-or-later OR Artistic-1.0-Perl) AND BSD-3-Clause", ""},
		{"Perl and Expat", "(Artistic-1.0-Perl OR GPL-1.0-or-later) AND MIT", ""},
		{"MIT and (GPL-2.0-or-later OR LGPL-2.1-only)", "MIT AND (GPL-2.0-or-later OR LGPL-2.1-only)", ""},
		{"GPL-3+ with GCC-exception-3.1", "GPL-3.0-or-later WITH GCC-exception-3.1", ""},
		{"GPL-2+ with Classpath exception 2.0", "GPL-2.0-or-later WITH Classpath-exception-2.0", ""},
		{"GPL-2+ with OpenSSL exception", "LicenseRef-GPL-2-plus-with-OpenSSL-exception", ""},
		{"public-domain", "LicenseRef-public-domain", ""},
		{"GPL", "LicenseRef-GPL", ""},
		{"BSD", "LicenseRef-BSD", ""},
		{"public-domain or GPL-2+", "LicenseRef-public-domain OR GPL-2.0-or-later", ""},
		{"LicenseRef-Fedora-Public-Domain", "LicenseRef-Fedora-Public-Domain", ""},
		{"GPL-2+ or", "LicenseRef-GPL-2-plus-or", ""},
		{"(MIT", "LicenseRef-MIT", ""},
		{"GPLv2 and Redistributable, no modification permitted", "LicenseRef-GPLv2-and-Redistributable-no-modification-permitted", ""},
		{"GPL-2+, BSD-3-clause", "LicenseRef-GPL-2-plus-BSD-3-clause", ""},
		{"  GPL-2+  ", "GPL-2.0-or-later", "GPL-2.0-or-later"},
	} {
		t.Run(tt.raw, func(t *testing.T) {
			lm := newLicenseMapper()
			l := lm.mapLicense(tt.raw)
			if l.expr != tt.want {
				t.Errorf("expression = %q, want %q", l.expr, tt.want)
			}
			id, ok := l.singleID()
			if id != tt.cdxID || ok != (tt.cdxID != "") {
				t.Errorf("singleID = %q, %v; want %q", id, ok, tt.cdxID)
			}
			for _, ref := range l.refs {
				if !strings.Contains(l.expr, ref) || lm.refs[ref] == "" {
					t.Errorf("ref %s: not in %q or not recorded (%v)", ref, l.expr, lm.refs)
				}
			}
		})
	}
}

// spdxDoc is the subset of an SPDX JSON document the tests read back, decoded straight from
// the bytes (not through the model that wrote them).
type spdxDoc struct {
	SPDXVersion  string `json:"spdxVersion"`
	Namespace    string `json:"documentNamespace"`
	CreationInfo struct {
		Created  string   `json:"created"`
		Creators []string `json:"creators"`
	} `json:"creationInfo"`
	Packages []struct {
		Name      string `json:"name"`
		ID        string `json:"SPDXID"`
		Version   string `json:"versionInfo"`
		Download  string `json:"downloadLocation"`
		Declared  string `json:"licenseDeclared"`
		Concluded string `json:"licenseConcluded"`
		Purpose   string `json:"primaryPackagePurpose"`
		Checksums []struct {
			Algorithm string `json:"algorithm"`
			Value     string `json:"checksumValue"`
		} `json:"checksums"`
		ExternalRefs []struct {
			Category string `json:"referenceCategory"`
			Type     string `json:"referenceType"`
			Locator  string `json:"referenceLocator"`
		} `json:"externalRefs"`
	} `json:"packages"`
	Files []struct {
		Name      string `json:"fileName"`
		ID        string `json:"SPDXID"`
		Checksums []struct {
			Algorithm string `json:"algorithm"`
			Value     string `json:"checksumValue"`
		} `json:"checksums"`
	} `json:"files"`
	Extracted []struct {
		ID   string `json:"licenseId"`
		Name string `json:"name"`
		Text string `json:"extractedText"`
	} `json:"hasExtractedLicensingInfos"`
	Relationships []struct {
		A    string `json:"spdxElementId"`
		B    string `json:"relatedSpdxElement"`
		Type string `json:"relationshipType"`
	} `json:"relationships"`
}

func decodeSPDX(t *testing.T, data []byte) spdxDoc {
	t.Helper()
	var d spdxDoc
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("decode SPDX: %v\n%s", err, data)
	}
	return d
}

func (d spdxDoc) has(a, typ, b string) bool {
	for _, r := range d.Relationships {
		if r.A == a && r.Type == typ && r.B == b {
			return true
		}
	}
	return false
}

func (d spdxDoc) pkgByName(name string) int {
	for i, p := range d.Packages {
		if p.Name == name {
			return i
		}
	}
	return -1
}

func TestSPDXDocument(t *testing.T) {
	data, err := SPDX(debian12(fixture()))
	if err != nil {
		t.Fatal(err)
	}
	d := decodeSPDX(t, data)
	if d.SPDXVersion != "SPDX-2.3" {
		t.Errorf("spdxVersion = %s", d.SPDXVersion)
	}
	if want := "https://ingot.build/spdx/demo/demo-20260101T120000-abcd1234"; d.Namespace != want {
		t.Errorf("namespace = %s, want %s", d.Namespace, want)
	}
	if d.CreationInfo.Created != "2026-01-01T12:05:07Z" || !slices.Equal(d.CreationInfo.Creators, []string{"Tool: ingot-v1.2.3"}) {
		t.Errorf("creationInfo = %+v", d.CreationInfo)
	}

	// The root: the image, described by the document, a descendant of its base.
	img := d.Packages[d.pkgByName("demo")]
	if img.ID != "SPDXRef-Image-demo" || img.Purpose != "OPERATING-SYSTEM" || img.Version != "demo-20260101T120000-abcd1234" {
		t.Errorf("image package = %+v", img)
	}
	if !d.has("SPDXRef-DOCUMENT", "DESCRIBES", img.ID) {
		t.Error("the document does not DESCRIBE the image")
	}
	bi := d.pkgByName("debian-12-genericcloud-amd64-20260101-1.qcow2")
	if bi < 0 {
		t.Fatalf("no base package in %s", data)
	}
	base := d.Packages[bi]
	if len(base.Checksums) != 1 || base.Checksums[0].Algorithm != "SHA256" || base.Checksums[0].Value != sumBase {
		t.Errorf("base checksums = %+v", base.Checksums)
	}
	if base.Download != fixture().Inputs[0].URL {
		t.Errorf("base downloadLocation = %s", base.Download)
	}
	if !d.has(img.ID, "DESCENDANT_OF", base.ID) {
		t.Error("the image is not DESCENDANT_OF its base")
	}

	// The outputs: described files with their sha256, sorted by name.
	if len(d.Files) != 2 || d.Files[0].Name != "./demo.qcow2" || d.Files[1].Name != "./demo.raw" {
		t.Fatalf("files = %+v", d.Files)
	}
	for i, sum := range []string{sumOut, sumOut2} {
		f := d.Files[i]
		if len(f.Checksums) != 1 || f.Checksums[0].Algorithm != "SHA256" || f.Checksums[0].Value != sum {
			t.Errorf("%s checksums = %+v", f.Name, f.Checksums)
		}
		if !d.has("SPDXRef-DOCUMENT", "DESCRIBES", f.ID) || !d.has(f.ID, "GENERATED_FROM", img.ID) {
			t.Errorf("%s: not described, or not generated from the image", f.Name)
		}
	}

	// The packages: contained in the image, each with its purl and declared license.
	for _, tt := range []struct{ name, purl, declared string }{
		{"jq", "pkg:deb/debian/jq@1.6-2.1%2Bdeb12u3?arch=amd64&distro=debian-12", "BSD-3-Clause"},
		{"attr", "pkg:deb/debian/attr@1:2.5.1-4?arch=amd64&distro=debian-12", "GPL-2.0-or-later"},
		{"base-files", "pkg:deb/debian/base-files@12.4%2Bdeb12u8?arch=amd64&distro=debian-12", "NOASSERTION"},
		{"wget", "pkg:deb/debian/wget@1.21.3-1%2Bb2?arch=amd64&distro=debian-12", "LicenseRef-GPL-3-plus-with-OpenSSL-exception"},
		{"libstdc++6", "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64&distro=debian-12", "GPL-3.0-or-later WITH GCC-exception-3.1"},
	} {
		i := d.pkgByName(tt.name)
		if i < 0 {
			t.Errorf("no package %s", tt.name)
			continue
		}
		p := d.Packages[i]
		if len(p.ExternalRefs) != 1 || p.ExternalRefs[0].Category != "PACKAGE-MANAGER" || p.ExternalRefs[0].Type != "purl" || p.ExternalRefs[0].Locator != tt.purl {
			t.Errorf("%s externalRefs = %+v, want the purl %s", tt.name, p.ExternalRefs, tt.purl)
		}
		if p.Declared != tt.declared || p.Concluded != "NOASSERTION" {
			t.Errorf("%s licenses: declared %q concluded %q, want %q and NOASSERTION", tt.name, p.Declared, p.Concluded, tt.declared)
		}
		if !d.has(img.ID, "CONTAINS", p.ID) {
			t.Errorf("the image does not CONTAIN %s", p.ID)
		}
	}
	// Packages are sorted by name, after the image and its base.
	var names []string
	for _, p := range d.Packages[2:] {
		names = append(names, p.Name)
	}
	if !slices.IsSorted(names) || len(names) != len(fixture().Packages) {
		t.Errorf("package order = %v", names)
	}
	// Every LicenseRef- is declared, with the name the package gave it.
	got := map[string]string{}
	for _, e := range d.Extracted {
		if e.Text == "" {
			t.Errorf("%s has no extractedText", e.ID)
		}
		got[e.ID] = e.Name
	}
	want := map[string]string{
		"LicenseRef-GPL-3-plus-with-OpenSSL-exception": "GPL-3+ with OpenSSL exception",
		"LicenseRef-public-domain":                     "public-domain",
	}
	if len(got) != len(want) {
		t.Errorf("extracted licenses = %v, want %v", got, want)
	}
	for id, name := range want {
		if got[id] != name {
			t.Errorf("extracted license %s = %q, want %q", id, got[id], name)
		}
	}
}

func TestSPDXBases(t *testing.T) {
	for _, tt := range []struct {
		name     string
		in       manifest.Input
		pkg      string
		rel      string
		purpose  string
		download string
	}{
		{"iso", manifest.Input{Kind: "iso", URL: "https://cdimage.debian.org/debian-cd/12.8.0/amd64/iso-cd/debian-12.8.0-amd64-netinst.iso", SHA256: sumBase},
			"debian-12.8.0-amd64-netinst.iso", "GENERATED_FROM", "INSTALL", "https://cdimage.debian.org/debian-cd/12.8.0/amd64/iso-cd/debian-12.8.0-amd64-netinst.iso"},
		{"stored image", manifest.Input{Kind: "image", URL: "image:base", SHA256: sumBase},
			"base", "DESCENDANT_OF", "OPERATING-SYSTEM", "NOASSERTION"},
		{"local file", manifest.Input{Kind: "disk", URL: "file:///srv/images/debian-12-cloud.qcow2", SHA256: sumBase},
			"debian-12-cloud.qcow2", "DESCENDANT_OF", "OPERATING-SYSTEM", "NOASSERTION"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := fixture()
			m.Inputs = []manifest.Input{tt.in}
			data, err := SPDX(debian12(m))
			if err != nil {
				t.Fatal(err)
			}
			d := decodeSPDX(t, data)
			i := d.pkgByName(tt.pkg)
			if i < 0 {
				t.Fatalf("no base package %s in %s", tt.pkg, data)
			}
			p := d.Packages[i]
			if p.Purpose != tt.purpose || p.Download != tt.download || len(p.Checksums) != 1 || p.Checksums[0].Value != sumBase {
				t.Errorf("base = %+v", p)
			}
			if !d.has("SPDXRef-Image-demo", tt.rel, p.ID) {
				t.Errorf("no %s relationship from the image to %s", tt.rel, p.ID)
			}
		})
	}
}

func TestCycloneDXDocument(t *testing.T) {
	data, err := CycloneDX(debian12(fixture()))
	if err != nil {
		t.Fatal(err)
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(data), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	if bom.SpecVersion != cdx.SpecVersion1_5 || !strings.HasPrefix(bom.SerialNumber, "urn:uuid:") || bom.Metadata.Timestamp != "2026-01-01T12:05:07Z" {
		t.Errorf("header: spec %s serial %s timestamp %s", bom.SpecVersion, bom.SerialNumber, bom.Metadata.Timestamp)
	}
	root := bom.Metadata.Component
	if root == nil || root.Type != cdx.ComponentTypeOS || root.Name != "demo" || root.Version != "demo-20260101T120000-abcd1234" {
		t.Fatalf("root component = %+v", root)
	}
	if root.Pedigree == nil || root.Pedigree.Ancestors == nil || len(*root.Pedigree.Ancestors) != 1 {
		t.Fatalf("root pedigree = %+v", root.Pedigree)
	}
	base := (*root.Pedigree.Ancestors)[0]
	if base.Hashes == nil || (*base.Hashes)[0] != (cdx.Hash{Algorithm: cdx.HashAlgoSHA256, Value: sumBase}) {
		t.Errorf("base hashes = %+v", base.Hashes)
	}
	if base.ExternalReferences == nil || (*base.ExternalReferences)[0].URL != fixture().Inputs[0].URL {
		t.Errorf("base references = %+v", base.ExternalReferences)
	}

	byName := map[string]cdx.Component{}
	for _, c := range *bom.Components {
		byName[c.Name] = c
	}
	for _, tt := range []struct {
		name, purl string
		lic        cdx.LicenseChoice
	}{
		{"jq", "pkg:deb/debian/jq@1.6-2.1%2Bdeb12u3?arch=amd64&distro=debian-12", cdx.LicenseChoice{License: &cdx.License{ID: "BSD-3-Clause"}}},
		{"perl-base", "pkg:deb/debian/perl-base@5.36.0-7%2Bdeb12u1?arch=amd64&distro=debian-12",
			cdx.LicenseChoice{Expression: "GPL-1.0-or-later OR Artistic-1.0-Perl"}},
		{"wget", "pkg:deb/debian/wget@1.21.3-1%2Bb2?arch=amd64&distro=debian-12",
			cdx.LicenseChoice{License: &cdx.License{Name: "GPL-3+ with OpenSSL exception"}}},
	} {
		c, ok := byName[tt.name]
		if !ok {
			t.Errorf("no component %s", tt.name)
			continue
		}
		if c.Type != cdx.ComponentTypeLibrary || c.PackageURL != tt.purl || c.BOMRef != tt.purl {
			t.Errorf("%s: type %s purl %s bom-ref %s, want library %s", tt.name, c.Type, c.PackageURL, c.BOMRef, tt.purl)
		}
		if c.Licenses == nil || len(*c.Licenses) != 1 {
			t.Errorf("%s licenses = %+v", tt.name, c.Licenses)
			continue
		}
		got := (*c.Licenses)[0]
		if got.Expression != tt.lic.Expression || (got.License == nil) != (tt.lic.License == nil) ||
			got.License != nil && (got.License.ID != tt.lic.License.ID || got.License.Name != tt.lic.License.Name) {
			t.Errorf("%s license = %+v %+v, want %+v %+v", tt.name, got, got.License, tt.lic, tt.lic.License)
		}
	}
	if c := byName["base-files"]; c.Licenses != nil {
		t.Errorf("base-files states no license, got %+v", c.Licenses)
	}
	for name, sum := range map[string]string{"demo.qcow2": sumOut, "demo.raw": sumOut2} {
		c := byName[name]
		if c.Type != cdx.ComponentTypeFile || c.Hashes == nil || (*c.Hashes)[0] != (cdx.Hash{Algorithm: cdx.HashAlgoSHA256, Value: sum}) {
			t.Errorf("output %s = %+v", name, c)
		}
	}
	if bom.Dependencies == nil || len(*bom.Dependencies) != 1 || (*bom.Dependencies)[0].Ref != root.BOMRef ||
		len(*(*bom.Dependencies)[0].Dependencies) != len(fixture().Packages) {
		t.Errorf("dependencies = %+v", bom.Dependencies)
	}
}

// TestDeterministic: the same build gives the same bytes, whatever order the manifest lists
// its packages and outputs in; another build gets another namespace and serial number.
func TestDeterministic(t *testing.T) {
	for name, write := range map[string]func(Input) ([]byte, error){"spdx": SPDX, "cyclonedx": CycloneDX} {
		t.Run(name, func(t *testing.T) {
			a, err := write(debian12(fixture()))
			if err != nil {
				t.Fatal(err)
			}
			m := fixture()
			slices.Reverse(m.Packages)
			slices.Reverse(m.Outputs)
			b, err := write(debian12(m))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("the same build, listed in another order, gives other bytes:\n%s\n---\n%s", a, b)
			}
			m.BuildID = "demo-20260101T130000-ffffffff"
			c, err := write(debian12(m))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(a, c) {
				t.Error("another build gives the same document")
			}
		})
	}
}

func TestIncompleteManifest(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*manifest.Manifest) *manifest.Manifest
	}{
		{"no manifest", func(*manifest.Manifest) *manifest.Manifest { return nil }},
		{"no build id", func(m *manifest.Manifest) *manifest.Manifest { m.BuildID = ""; return m }},
		{"no time", func(m *manifest.Manifest) *manifest.Manifest {
			m.Started, m.Finished = time.Time{}, time.Time{}
			return m
		}},
		{"bad output digest", func(m *manifest.Manifest) *manifest.Manifest { m.Outputs[0].SHA256 = "abc"; return m }},
		{"upper-case output digest", func(m *manifest.Manifest) *manifest.Manifest {
			m.Outputs[0].SHA256 = strings.Repeat("A", 64)
			return m
		}},
		{"bad base digest", func(m *manifest.Manifest) *manifest.Manifest { m.Inputs[0].SHA256 = "sha256:" + sumBase; return m }},
		{"package without a name", func(m *manifest.Manifest) *manifest.Manifest { m.Packages[0].Name = ""; return m }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := debian12(tt.change(fixture()))
			if _, err := SPDX(in); !errors.Is(err, ErrInput) {
				t.Errorf("SPDX: err = %v, want ErrInput", err)
			}
			if _, err := CycloneDX(in); !errors.Is(err, ErrInput) {
				t.Errorf("CycloneDX: err = %v, want ErrInput", err)
			}
		})
	}
	// Started stands in for a missing Finished.
	m := fixture()
	m.Finished = time.Time{}
	data, err := SPDX(debian12(m))
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeSPDX(t, data).CreationInfo.Created; got != "2026-01-01T12:00:00Z" {
		t.Errorf("created = %s, want the start time", got)
	}
}

// TestSPDXToolsGolang reads the document back with the SPDX project's Go library and checks it
// with its validator: every relationship names an element that exists, and the image is what
// the document describes. Writing what it read must give the same JSON: a field it does not
// know (a misspelling of ours) would be lost on the way.
func TestSPDXToolsGolang(t *testing.T) {
	for name, in := range validationInputs() {
		t.Run(name, func(t *testing.T) {
			data, err := SPDX(in)
			if err != nil {
				t.Fatal(err)
			}
			checkSPDXToolsGolang(t, data)
		})
	}
}

func checkSPDXToolsGolang(t *testing.T, data []byte) {
	t.Helper()
	doc, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("tools-golang cannot read the document: %v", err)
	}
	if err := validateSPDXDocument(doc); err != nil {
		t.Errorf("tools-golang: %v", err)
	}
	described, err := describedPackages(doc)
	if err != nil {
		t.Fatalf("tools-golang: %v", err)
	}
	if !slices.Contains(described, common.ElementID("Image-"+idPart(doc.Packages[0].PackageName))) {
		t.Errorf("tools-golang: the described packages %v do not include the image", described)
	}
	var again bytes.Buffer
	if err := spdxjson.Write(doc, &again); err != nil {
		t.Fatal(err)
	}
	var want, got any
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(again.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if w, g := canonical(t, want), canonical(t, got); w != g {
		t.Errorf("tools-golang's model does not hold everything the document says:\nours: %s\ntheirs: %s", w, g)
	}
}

func canonical(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
