package sbom

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/github/go-spdx/v2/spdxexp/spdxlicenses"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// noAssertion is SPDX's "nothing is said about this" (SPDX 2.3 clause 3.2): what a license,
// copyright or download location is when the build does not know it.
const noAssertion = "NOASSERTION"

// SPDX returns the build's SPDX 2.3 JSON document. It describes:
//
//   - the image built, a package (primary purpose OPERATING-SYSTEM) that the document DESCRIBES,
//     and that is a DESCENDANT_OF its base disk or stored image, or GENERATED_FROM its installer
//     ISO: the base is a package of its own, with its sha256 and its URL as download location;
//   - every installed package, which the image CONTAINS, with its purl as a PACKAGE-MANAGER
//     external reference and its stated license as licenseDeclared (NOASSERTION when none was
//     stated, and licenseConcluded is always NOASSERTION: nobody concluded one);
//   - each output, a file the document also DESCRIBES, with its sha256, GENERATED_FROM the image.
func SPDX(in Input) ([]byte, error) {
	b, err := newBuild(in)
	if err != nil {
		return nil, fmt.Errorf("spdx sbom: %w", err)
	}
	doc := b.spdx()
	var buf bytes.Buffer
	if err := spdxjson.Write(doc, &buf, spdxjson.Indent("  "), spdxjson.EscapeHTML(false)); err != nil {
		return nil, fmt.Errorf("spdx sbom of %s: %w", b.m.BuildID, err)
	}
	return buf.Bytes(), nil
}

func (b *build) spdx() *spdx.Document {
	m := b.m
	used := ids{"DOCUMENT": true}
	ref := func(id string) common.DocElementID { return common.MakeDocElementID("", id) }
	rel := func(a, typ, b string) *spdx.Relationship {
		return &spdx.Relationship{RefA: ref(a), RefB: ref(b), Relationship: typ}
	}
	doc := &spdx.Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      m.BuildID,
		DocumentNamespace: b.namespace(),
		CreationInfo: &spdx.CreationInfo{
			LicenseListVersion: licenseListVersion(),
			Creators:           []common.Creator{{CreatorType: "Tool", Creator: "ingot-" + b.toolVersion()}},
			Created:            b.created,
		},
	}
	if c := m.Tool.IngotCommit; c != "" {
		doc.CreationInfo.CreatorComment = "ingot commit " + c
	}

	image := used.next("Image", m.Name)
	doc.Packages = append(doc.Packages, &spdx.Package{
		PackageName:             m.Name,
		PackageSPDXIdentifier:   common.ElementID(image),
		PackageVersion:          m.BuildID,
		PackageDownloadLocation: noAssertion,
		FilesAnalyzed:           false,
		PackageLicenseConcluded: noAssertion,
		PackageLicenseDeclared:  noAssertion,
		PackageCopyrightText:    noAssertion,
		PackageComment:          "The image ingot built; its outputs are the files this document describes.",
		PrimaryPackagePurpose:   "OPERATING-SYSTEM",
		BuiltDate:               b.created,
	})
	doc.Relationships = append(doc.Relationships, rel("DOCUMENT", common.TypeRelationshipDescribe, image))

	for _, base := range b.bases {
		id := used.next("Base", baseName(base))
		p := &spdx.Package{
			PackageName:             baseName(base),
			PackageSPDXIdentifier:   common.ElementID(id),
			PackageDownloadLocation: downloadLocation(base.URL),
			FilesAnalyzed:           false,
			PackageLicenseConcluded: noAssertion,
			PackageLicenseDeclared:  noAssertion,
			PackageCopyrightText:    noAssertion,
			PackageComment:          fmt.Sprintf("The %s the build started from: %s", baseKind(base.Kind), base.URL),
			PrimaryPackagePurpose:   "OPERATING-SYSTEM",
		}
		typ := common.TypeRelationshipDescendantOf // a modified copy: same lineage, later
		if base.Kind == "iso" {
			p.PrimaryPackagePurpose = "INSTALL"
			typ = common.TypeRelationshipGeneratedFrom // installed from it, not a copy of it
		}
		if base.SHA256 != "" {
			p.PackageChecksums = []common.Checksum{{Algorithm: common.SHA256, Value: base.SHA256}}
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, rel(image, typ, id))
	}

	for _, pk := range b.packages {
		id := used.next("Package-"+purlType(pk.purl), pk.Name+"-"+pk.Arch)
		declared := noAssertion
		if pk.license.expr != "" {
			declared = pk.license.expr
		}
		p := &spdx.Package{
			PackageName:             pk.Name,
			PackageSPDXIdentifier:   common.ElementID(id),
			PackageVersion:          pk.Version,
			PackageDownloadLocation: noAssertion,
			FilesAnalyzed:           false,
			PackageLicenseConcluded: noAssertion,
			PackageLicenseDeclared:  declared,
			PackageCopyrightText:    noAssertion,
			PackageExternalReferences: []*spdx.PackageExternalReference{{
				Category: common.CategoryPackageManager, RefType: "purl", Locator: pk.purl,
			}},
		}
		if pk.license.raw != "" && pk.license.raw != pk.license.expr {
			p.PackageLicenseComments = fmt.Sprintf("The package states its license as %q.", pk.license.raw)
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, rel(image, common.TypeRelationshipContains, id))
	}

	for _, o := range b.outputs {
		id := used.next("File", o.File)
		doc.Files = append(doc.Files, &spdx.File{
			FileName:           "./" + strings.TrimPrefix(o.File, "./"),
			FileSPDXIdentifier: common.ElementID(id),
			FileTypes:          []string{"BINARY"},
			Checksums:          []common.Checksum{{Algorithm: common.SHA256, Value: o.SHA256}},
			LicenseConcluded:   noAssertion,
			FileCopyrightText:  noAssertion,
			FileComment:        fmt.Sprintf("Output of format %s, %d bytes.", o.Format, o.Size),
		})
		doc.Relationships = append(doc.Relationships,
			rel("DOCUMENT", common.TypeRelationshipDescribe, id),
			rel(id, common.TypeRelationshipGeneratedFrom, image))
	}

	refs := make([]string, 0, len(b.licenses.refs))
	for id := range b.licenses.refs {
		refs = append(refs, id)
	}
	slices.Sort(refs)
	for _, id := range refs {
		name := b.licenses.refs[id]
		doc.OtherLicenses = append(doc.OtherLicenses, &spdx.OtherLicense{
			LicenseIdentifier: id,
			LicenseName:       name,
			ExtractedText: fmt.Sprintf("A license the image's package metadata names %q (for a Debian package, "+
				"the License: of /usr/share/doc/PACKAGE/copyright). The license list has no identifier for it, "+
				"and this document does not carry its text.", name),
		})
	}
	return doc
}

// licenseListVersion is the SPDX License List version the license ids come from, as SPDX 2.3
// clause 6.7 writes it (MAJOR.MINOR).
func licenseListVersion() string {
	v := spdxlicenses.LicenseListVersion()
	if major, rest, ok := strings.Cut(v, "."); ok {
		minor, _, _ := strings.Cut(rest, ".")
		return major + "." + minor
	}
	return v
}

// downloadLocation is a base's URL where it is one a consumer could fetch (SPDX 2.3 clause 7.7);
// a stored image ("image:NAME") and a local file are not.
func downloadLocation(u string) string {
	for _, scheme := range []string{"https://", "http://", "ftp://"} {
		if strings.HasPrefix(u, scheme) {
			return u
		}
	}
	return noAssertion
}

func baseKind(kind string) string {
	switch kind {
	case "disk":
		return "disk image"
	case "iso":
		return "installer ISO"
	case "image":
		return "stored image"
	}
	return kind
}

// purlType is the type part of a purl ("deb").
func purlType(purl string) string {
	t, _, _ := strings.Cut(strings.TrimPrefix(purl, "pkg:"), "/")
	return t
}
