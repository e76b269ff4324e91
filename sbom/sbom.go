// Package sbom turns a build's record (its manifest) into a software bill of materials: an SPDX 2.3
// JSON document, which every build writes, and a CycloneDX 1.5 JSON document, on request. Both say
// the same things:
//
//   - the image built, the root the document describes, and the base it was made from (the disk,
//     installer ISO or stored image the build started from, with its sha256 and where it came from);
//   - every package installed in the image, with its package URL (purl) and the license its
//     copyright file states, mapped to an SPDX license expression where the mapping is unambiguous;
//   - each output file, with its sha256.
//
// The documents are deterministic: the same manifest gives the same bytes. Nothing in them comes
// from the clock or from map order; the SPDX document namespace and the CycloneDX serial number
// derive from the build id.
//
// The models and writers are the SPDX project's tools-golang and CycloneDX's cyclonedx-go, and the
// purls come from package-url's packageurl-go, so that the JSON is what those specifications'
// own tooling reads; the tests check both documents with third-party validators (see
// docs/sbom.md).
package sbom

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ingot-build/ingot/manifest"
	packageurl "github.com/package-url/packageurl-go"
)

// The names a build gives the documents beside its outputs: the suffixes are the ones the SPDX
// and CycloneDX specifications recommend for JSON documents.
const (
	SPDXFile      = "sbom.spdx.json"
	CycloneDXFile = "sbom.cdx.json"
)

// Input is what a document is made from: the manifest of a finished build and the distribution
// its guest runs.
type Input struct {
	// Manifest is the build's record. Its Name, BuildID, Finished (or Started), Packages,
	// Outputs, Inputs and Tool are read; nothing is changed.
	Manifest *manifest.Manifest
	// Distro is the guest's os-release ID ("debian", "ubuntu", "fedora"): the purl namespace,
	// and what decides the purl type (rpm for the RPM distributions, deb otherwise). Empty
	// means Debian.
	Distro string
	// DistroVersion is the guest's os-release VERSION_ID ("12"), for the purl qualifier
	// distro=debian-12. Empty leaves the qualifier out.
	DistroVersion string
}

// ErrInput marks a manifest that cannot make a document: no build id, no build time, or a
// malformed digest.
var ErrInput = errors.New("sbom: manifest incomplete")

// docTime is the format both specifications take for a date: UTC, to the second (SPDX 2.3
// clause 6.9 allows no fraction).
const docTime = "2006-01-02T15:04:05Z"

// namespaceBase is the prefix of every SPDX document namespace ingot writes. A namespace is a
// unique URI that names the document; it is not a URL anything is served from.
const namespaceBase = "https://ingot.build/spdx/"

// build is the part of an Input both documents are made from, checked and sorted once.
type build struct {
	m        *manifest.Manifest
	created  string
	packages []pkg
	outputs  []manifest.File
	bases    []manifest.Input
	licenses *licenseMapper
}

// pkg is one installed package and what the documents say of it.
type pkg struct {
	manifest.Package
	purl    string
	license license
}

// newBuild checks in and sorts what the documents list: packages by name, architecture and
// version, outputs by path; the base inputs keep the manifest's order (the order the build used
// them in).
func newBuild(in Input) (*build, error) {
	m := in.Manifest
	if m == nil {
		return nil, fmt.Errorf("%w: no manifest", ErrInput)
	}
	if m.Name == "" || m.BuildID == "" {
		return nil, fmt.Errorf("%w: no name or build_id", ErrInput)
	}
	when := m.Finished
	if when.IsZero() {
		when = m.Started
	}
	if when.IsZero() {
		return nil, fmt.Errorf("%w: build %s has no finished or started time", ErrInput, m.BuildID)
	}
	b := &build{m: m, created: when.UTC().Truncate(time.Second).Format(docTime), licenses: newLicenseMapper()}

	for _, o := range m.Outputs {
		if !isSHA256(o.SHA256) {
			return nil, fmt.Errorf("%w: output %s: sha256 %q is not 64 lowercase hex digits", ErrInput, o.File, o.SHA256)
		}
		if o.File == "" {
			return nil, fmt.Errorf("%w: an output has no file name", ErrInput)
		}
	}
	b.outputs = slices.Clone(m.Outputs)
	slices.SortStableFunc(b.outputs, func(x, y manifest.File) int { return strings.Compare(x.File, y.File) })

	for _, i := range m.Inputs {
		if i.SHA256 != "" && !isSHA256(i.SHA256) {
			return nil, fmt.Errorf("%w: base %s: sha256 %q is not 64 lowercase hex digits", ErrInput, i.URL, i.SHA256)
		}
	}
	b.bases = m.Inputs

	pkgs := slices.Clone(m.Packages)
	slices.SortStableFunc(pkgs, func(x, y manifest.Package) int {
		if c := strings.Compare(x.Name, y.Name); c != 0 {
			return c
		}
		if c := strings.Compare(x.Arch, y.Arch); c != 0 {
			return c
		}
		return strings.Compare(x.Version, y.Version)
	})
	for _, p := range pkgs {
		if p.Name == "" {
			return nil, fmt.Errorf("%w: a package has no name", ErrInput)
		}
		b.packages = append(b.packages, pkg{Package: p, purl: purlOf(in, p), license: b.licenses.mapLicense(p.License)})
	}
	return b, nil
}

// rpmDistros are the os-release IDs of the distributions whose packages are RPMs; every other
// distribution's packages are taken to be Debian packages, as the inventory lists only dpkg's
// and rpm's.
var rpmDistros = []string{
	"almalinux", "amzn", "azurelinux", "centos", "fedora", "mariner", "ol", "opensuse",
	"opensuse-leap", "opensuse-tumbleweed", "rhel", "rocky", "sles", "sle-micro",
}

// purlOf is p's package URL, in the form the purl-spec's deb and rpm type definitions give:
// pkg:deb/debian/jq@1.6-2.1%2Bdeb12u3?arch=amd64&distro=debian-12. The version is the package
// manager's whole version (a Debian epoch stays in it: 1:2.4.47-2); packageurl-go encodes it.
func purlOf(in Input, p manifest.Package) string {
	distro := strings.ToLower(in.Distro)
	namespace, typ := distro, packageurl.TypeDebian
	if namespace == "" {
		namespace = "debian"
	}
	if slices.Contains(rpmDistros, distro) {
		typ = packageurl.TypeRPM
	}
	var q packageurl.Qualifiers
	if p.Arch != "" {
		q = append(q, packageurl.Qualifier{Key: "arch", Value: p.Arch})
	}
	if distro != "" && in.DistroVersion != "" {
		q = append(q, packageurl.Qualifier{Key: "distro", Value: distro + "-" + in.DistroVersion})
	}
	name := p.Name
	if typ == packageurl.TypeDebian {
		// The deb type's names are case-insensitive and written lowercase; Debian's
		// policy allows only lowercase ones anyway.
		name = strings.ToLower(name)
	}
	return packageurl.NewPackageURL(typ, namespace, name, p.Version, q, "").ToString()
}

// namespace is the SPDX document namespace of the build: unique to the build (its id has a
// timestamp and random bits), never fetched.
func (b *build) namespace() string {
	return namespaceBase + url.PathEscape(b.m.Name) + "/" + url.PathEscape(b.m.BuildID)
}

// toolVersion is the ingot version that made the build, for the documents' creator / tool.
func (b *build) toolVersion() string {
	if v := b.m.Tool.IngotVersion; v != "" {
		return v
	}
	return "unknown"
}

// baseName is what a base input is called: the file name of its URL, or the stored image's name.
func baseName(i manifest.Input) string {
	if name, ok := strings.CutPrefix(i.URL, "image:"); ok && name != "" {
		return name
	}
	if u, err := url.Parse(i.URL); err == nil && u.Path != "" && path.Base(u.Path) != "/" && path.Base(u.Path) != "." {
		return path.Base(u.Path)
	}
	if i.URL != "" {
		return i.URL
	}
	return i.Kind
}

func isSHA256(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// idPart turns s into characters an SPDX element id allows (letters, digits, '.', '-').
func idPart(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range s {
		switch {
		case r == '+':
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteString("plus")
			dash = false
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.':
			b.WriteRune(r)
			dash = false
		default:
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	return strings.TrimRight(b.String(), "-")
}

// ids hands out element ids, unique within a document.
type ids map[string]bool

// next returns prefix-part, or prefix-part-2, -3… when taken.
func (u ids) next(prefix, part string) string {
	id := prefix
	if p := idPart(part); p != "" {
		id += "-" + p
	}
	cand := id
	for n := 2; u[cand]; n++ {
		cand = fmt.Sprintf("%s-%d", id, n)
	}
	u[cand] = true
	return cand
}
