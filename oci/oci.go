// Package oci publishes an ingot build to an OCI registry and pulls it back, verified
// (docs/oci.md). A build's output directory becomes one artifact: an OCI image manifest whose
// config carries the platform (architecture and OS) and whose layers are the build's files, each
// with its own media type and annotations (the outputs, and the records that travel with them:
// manifest.json, SHA256SUMS, the SBOMs, the provenance and the minisign signatures). On a registry
// with the referrers API the records are also attached as referrers of that manifest.
//
// Why one manifest rather than an index of per-output artifacts: a tag that names an index of
// artifacts is what some registries refuse (Konflux saw HTTP 500 from Quay), and every registry
// stores an image manifest with arbitrary layer media types. One tag, one digest, one pull.
//
// Transfers go through oras-go (oras.land/oras-go/v2): oras.CopyGraph decides what is missing and
// pushes it, oras.PackManifest writes manifests. Large blobs are uploaded in chunks (the
// distribution spec's POST, PATCH…, PUT), which oras-go does not do, so this package adds that
// one request sequence on top of oras-go's authenticating client.
package oci

import (
	"fmt"
	"path"
	"strings"

	"oras.land/oras-go/v2/registry"
)

// Media types of the build artifact (docs/oci.md lists them with examples).
const (
	// ArtifactType is the artifactType of a build's manifest.
	ArtifactType = "application/vnd.ingot.build.v1"
	// ConfigMediaType is the build's config: the platform, as an OCI image config states it
	// (architecture, os), and what the build was.
	ConfigMediaType = "application/vnd.ingot.build.config.v1+json"

	MediaTypeManifest  = "application/vnd.ingot.manifest.v1+json"
	MediaTypeSums      = "application/vnd.ingot.sha256sums.v1"
	MediaTypeSPDX      = "application/spdx+json"
	MediaTypeCycloneDX = "application/vnd.cyclonedx+json"
	// MediaTypeProvenance is the DSSE envelope of the SLSA provenance statement.
	MediaTypeProvenance = "application/vnd.dsse.envelope.v1+json"
	MediaTypeMinisig    = "application/vnd.ingot.minisign.signature.v1"
	MediaTypeInventory  = "application/vnd.ingot.inventory.v1+jsonl+zstd"
	MediaTypeDownload   = "application/vnd.ingot.download.v1"
	MediaTypeFile       = "application/octet-stream"
	// mediaTypeDiskPrefix starts the media type of each disk output, followed by its format.
	mediaTypeDiskPrefix = "application/vnd.ingot.disk.v1."
)

// Annotations, besides the OCI ones (org.opencontainers.image.title names each layer's file).
const (
	// AnnotationRole says what a layer is: output, record, signature, download or file.
	AnnotationRole = "io.ingot.role"
	// AnnotationFormat is an output layer's format, as manifest.json gives it (qcow2, raw.zst…).
	AnnotationFormat = "io.ingot.format"
	// AnnotationSignatureOf names the file a signature layer signs.
	AnnotationSignatureOf = "io.ingot.signature-of"
	// AnnotationName and AnnotationBuildID are the build's, on the manifest.
	AnnotationName    = "io.ingot.name"
	AnnotationBuildID = "io.ingot.build-id"
	// AnnotationOS is the image's distribution, "ID VERSION_ID" from its os-release.
	AnnotationOS = "io.ingot.os"
	// AnnotationBuild, on a containerDisk and on referrers, is the digest of the build's manifest.
	AnnotationBuild = "io.ingot.build"
)

// Layer roles.
const (
	RoleOutput    = "output"
	RoleRecord    = "record"
	RoleSignature = "signature"
	RoleDownload  = "download"
	RoleFile      = "file"
)

// DiskMediaType is the media type of an output of the given format (manifest.json's format).
func DiskMediaType(format string) string {
	switch format {
	case "raw.zst":
		return mediaTypeDiskPrefix + "raw+zstd"
	case "raw.xz":
		return mediaTypeDiskPrefix + "raw+xz"
	case "bmap":
		return mediaTypeDiskPrefix + "bmap+xml"
	case "ova":
		return mediaTypeDiskPrefix + "ova+tar"
	}
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '+' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return '-'
	}, format)
	return mediaTypeDiskPrefix + clean
}

// recordMediaType is the media type of a file of the build that is not an output, by its name.
func recordMediaType(name string) (mediaType, role string) {
	switch base := path.Base(name); {
	case strings.HasSuffix(base, ".minisig"):
		return MediaTypeMinisig, RoleSignature
	case base == "manifest.json":
		return MediaTypeManifest, RoleRecord
	case base == "SHA256SUMS":
		return MediaTypeSums, RoleRecord
	case base == "sbom.spdx.json":
		return MediaTypeSPDX, RoleRecord
	case base == "sbom.cdx.json":
		return MediaTypeCycloneDX, RoleRecord
	case base == "provenance.intoto.jsonl":
		return MediaTypeProvenance, RoleRecord
	case base == "inventory.jsonl.zst":
		return MediaTypeInventory, RoleRecord
	}
	return MediaTypeFile, RoleFile
}

// Ref is a parsed oci://REGISTRY/REPO[:TAG][@DIGEST].
type Ref struct {
	registry.Reference
}

// Scheme is what every reference ingot takes starts with.
const Scheme = "oci://"

// ParseRef parses oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:HEX. A digest wins over
// a tag given with it (oras-go's rule, and the distribution spec's).
func ParseRef(s string) (Ref, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Ref{}, fmt.Errorf("%q: want %sREGISTRY/REPO:TAG or %sREGISTRY/REPO@sha256:…", s, Scheme, Scheme)
	}
	r, err := registry.ParseReference(rest)
	if err != nil {
		return Ref{}, fmt.Errorf("%q: %w", s, err)
	}
	if r.Repository == "" {
		return Ref{}, fmt.Errorf("%q: no repository", s)
	}
	return Ref{r}, nil
}

// String is the reference with its scheme.
func (r Ref) String() string { return Scheme + r.Reference.String() }

// Digest is the reference's digest, "" when it names a tag.
func (r Ref) Digest() string {
	if d, err := r.Reference.Digest(); err == nil {
		return d.String()
	}
	return ""
}
