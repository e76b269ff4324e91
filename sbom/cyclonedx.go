package sbom

import (
	"bytes"
	"fmt"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/uuid"
)

// CycloneDX returns the build's CycloneDX 1.5 JSON document, saying what SPDX says in
// CycloneDX's terms:
//
//   - metadata.component, the root, is the image built (type operating-system, version the build
//     id); its pedigree.ancestors is the base it was made from, with its SHA-256 and, when it was
//     downloaded, a distribution reference to its URL;
//   - components lists every installed package (type library, with its purl, which is also its
//     bom-ref, and its stated license: an SPDX id, an SPDX expression, or, when the license has
//     no SPDX id, its name as stated), then each output (type file, with its SHA-256);
//   - dependencies has the image depend on every package it holds.
//
// The serial number is a name-based (SHA-1, RFC 9562 version 5) UUID of the SPDX document
// namespace, so the two documents of a build name the same build, and a rebuild of the same
// manifest gets the same one.
func CycloneDX(in Input) ([]byte, error) {
	b, err := newBuild(in)
	if err != nil {
		return nil, fmt.Errorf("cyclonedx sbom: %w", err)
	}
	var buf bytes.Buffer
	enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON).SetPretty(true).SetEscapeHTML(false)
	if err := enc.EncodeVersion(b.cyclonedx(), cdx.SpecVersion1_5); err != nil {
		return nil, fmt.Errorf("cyclonedx sbom of %s: %w", b.m.BuildID, err)
	}
	return buf.Bytes(), nil
}

func (b *build) cyclonedx() *cdx.BOM {
	m := b.m
	used := ids{}
	bom := cdx.NewBOM()
	bom.SerialNumber = "urn:uuid:" + uuid.NewSHA1(uuid.NameSpaceURL, []byte(b.namespace())).String()

	var ancestors []cdx.Component
	for _, base := range b.bases {
		c := cdx.Component{
			BOMRef:      used.next("base", baseName(base)),
			Type:        cdx.ComponentTypeOS,
			Name:        baseName(base),
			Description: fmt.Sprintf("The %s the build started from: %s", baseKind(base.Kind), base.URL),
		}
		if base.SHA256 != "" {
			c.Hashes = &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: base.SHA256}}
		}
		if loc := downloadLocation(base.URL); loc != noAssertion {
			c.ExternalReferences = &[]cdx.ExternalReference{{Type: cdx.ERTypeDistribution, URL: loc}}
		}
		ancestors = append(ancestors, c)
	}
	image := cdx.Component{
		BOMRef:      used.next("image", m.Name),
		Type:        cdx.ComponentTypeOS,
		Name:        m.Name,
		Version:     m.BuildID,
		Description: "The image ingot built; its outputs are the file components.",
	}
	if len(ancestors) > 0 {
		image.Pedigree = &cdx.Pedigree{Ancestors: &ancestors}
	}
	bom.Metadata = &cdx.Metadata{
		Timestamp: b.created,
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeApplication, Name: "ingot", Version: b.toolVersion(),
		}}},
		Component: &image,
	}

	var comps []cdx.Component
	var held []string
	for _, pk := range b.packages {
		ref := pk.purl
		if used[ref] {
			ref = used.next(pk.purl, "")
		}
		used[ref] = true
		comps = append(comps, cdx.Component{
			BOMRef:     ref,
			Type:       cdx.ComponentTypeLibrary,
			Name:       pk.Name,
			Version:    pk.Version,
			PackageURL: pk.purl,
			Licenses:   cdxLicenses(pk.license),
		})
		held = append(held, ref)
	}
	for _, o := range b.outputs {
		comps = append(comps, cdx.Component{
			BOMRef: used.next("file", o.File),
			Type:   cdx.ComponentTypeFile,
			Name:   o.File,
			Hashes: &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: o.SHA256}},
			Properties: &[]cdx.Property{
				{Name: "ingot:format", Value: o.Format},
				{Name: "ingot:size", Value: fmt.Sprint(o.Size)},
			},
		})
	}
	if len(comps) > 0 {
		bom.Components = &comps
	}
	if len(held) > 0 {
		bom.Dependencies = &[]cdx.Dependency{{Ref: image.BOMRef, Dependencies: &held}}
	}
	return bom
}

// cdxLicenses is a package's license in CycloneDX: a listed SPDX id, an SPDX expression of
// listed ids, or, when part of it has no SPDX id, the license as the package stated it (a
// CycloneDX consumer has no way to resolve an SPDX LicenseRef-).
func cdxLicenses(l license) *cdx.Licenses {
	switch {
	case l.expr == "":
		return nil
	case len(l.refs) > 0:
		return &cdx.Licenses{{License: &cdx.License{Name: l.raw}}}
	}
	if id, ok := l.singleID(); ok {
		return &cdx.Licenses{{License: &cdx.License{ID: id}}}
	}
	return &cdx.Licenses{{Expression: l.expr}}
}
