package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"

	"github.com/ingot-build/ingot/manifest"
)

// The build's record files, by the names bake gives them.
const (
	manifestFile = "manifest.json"
	sumsFile     = "SHA256SUMS"
)

// Config is the config blob of a build's manifest (ConfigMediaType). Its first fields are an
// OCI image config's, so that tools which read a config's platform find it where they look.
type Config struct {
	Architecture string     `json:"architecture"`
	OS           string     `json:"os"`
	Variant      string     `json:"variant,omitempty"`
	Created      *time.Time `json:"created,omitempty"`
	Ingot        BuildInfo  `json:"ingot"`
}

// BuildInfo is what the build was, from its manifest.json.
type BuildInfo struct {
	Name    string `json:"name"`
	BuildID string `json:"build_id"`
	// Distribution and DistributionVersion are the image's os-release ID and VERSION_ID.
	Distribution        string   `json:"distribution,omitempty"`
	DistributionVersion string   `json:"distribution_version,omitempty"`
	IngotVersion        string   `json:"ingot_version,omitempty"`
	Outputs             []Output `json:"outputs"`
}

// Output is one output of the build, as its manifest lists it.
type Output struct {
	File   string `json:"file"`
	Format string `json:"format"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// file is one file of a build's directory, ready to push.
type file struct {
	rel  string // slash-separated, relative to the directory
	path string
	desc ocispec.Descriptor
}

// build is an output directory read for a push.
type build struct {
	dir      string
	m        *manifest.Manifest
	files    []file
	platform ocispec.Platform
	created  time.Time
}

// readBuild reads the output directory dir: its manifest.json, SHA256SUMS, and every regular
// file in it, each described with its digest. Digests come from SHA256SUMS where it lists the
// file (the build hashed its outputs already, and the registry checks every digest it receives,
// so a file changed since fails the upload); the few files it does not list (SHA256SUMS itself,
// signatures, the SBOMs) are hashed here.
func readBuild(ctx context.Context, dir string, platform *ocispec.Platform) (*build, error) {
	m, err := manifest.Read(filepath.Join(dir, manifestFile))
	if err != nil {
		return nil, fmt.Errorf("%s is not an ingot build's output directory: %w", dir, err)
	}
	sums, err := readSums(filepath.Join(dir, sumsFile))
	if err != nil {
		return nil, err
	}
	outputs := map[string]manifest.File{}
	for _, o := range m.Outputs {
		outputs[path.Clean(o.File)] = o
		if s, ok := sums[path.Clean(o.File)]; !ok || s != strings.ToLower(o.SHA256) {
			return nil, fmt.Errorf("%s: %s lists output %s with sha256 %s, %s with %q: the records disagree", dir, manifestFile, o.File, o.SHA256, sumsFile, s)
		}
	}
	b := &build{dir: dir, m: m, created: m.Finished.UTC().Truncate(time.Second)}
	if b.created.IsZero() || b.created.Unix() <= 0 {
		b.created = time.Unix(0, 0).UTC()
	}
	if platform != nil {
		b.platform = *platform
	} else {
		b.platform = platformOf(m)
	}

	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != dir {
			// renameio's temporary files, editors' droppings: never part of a build
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		st, err := d.Info()
		if err != nil {
			return err
		}
		f := file{rel: rel, path: p}
		f.desc.Size = st.Size()
		if s, ok := sums[rel]; ok {
			f.desc.Digest = digest.NewDigestFromEncoded(digest.SHA256, s)
		} else {
			if f.desc.Digest, err = hashFile(ctx, p); err != nil {
				return err
			}
		}
		f.desc.Annotations = map[string]string{ocispec.AnnotationTitle: rel}
		if o, ok := outputs[rel]; ok {
			f.desc.MediaType = DiskMediaType(o.Format)
			f.desc.Annotations[AnnotationRole] = RoleOutput
			f.desc.Annotations[AnnotationFormat] = o.Format
		} else if slices.ContainsFunc(m.Downloads, func(d manifest.File) bool { return path.Clean(d.File) == rel }) {
			f.desc.MediaType, f.desc.Annotations[AnnotationRole] = MediaTypeDownload, RoleDownload
		} else {
			mt, role := recordMediaType(rel)
			f.desc.MediaType, f.desc.Annotations[AnnotationRole] = mt, role
			if role == RoleSignature {
				f.desc.Annotations[AnnotationSignatureOf] = strings.TrimSuffix(rel, ".minisig")
			}
		}
		b.files = append(b.files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	for rel := range sums {
		if !slices.ContainsFunc(b.files, func(f file) bool { return f.rel == rel }) {
			return nil, fmt.Errorf("%s: %s lists %s, which is not there", dir, sumsFile, rel)
		}
	}
	return b, nil
}

// config is the build's config blob.
func (b *build) config() ([]byte, error) {
	c := Config{
		Architecture: b.platform.Architecture,
		OS:           b.platform.OS,
		Variant:      b.platform.Variant,
		Created:      &b.created,
		Ingot: BuildInfo{
			Name:         b.m.Name,
			BuildID:      b.m.BuildID,
			IngotVersion: b.m.Tool.IngotVersion,
			Outputs:      []Output{},
		},
	}
	if b.m.OS != nil {
		c.Ingot.Distribution, c.Ingot.DistributionVersion = b.m.OS.ID, b.m.OS.VersionID
	}
	for _, o := range b.m.Outputs {
		c.Ingot.Outputs = append(c.Ingot.Outputs, Output{File: o.File, Format: o.Format, Size: o.Size, SHA256: o.SHA256})
	}
	return json.Marshal(c)
}

// annotations are the build manifest's.
func (b *build) annotations() map[string]string {
	a := map[string]string{
		ocispec.AnnotationCreated: b.created.Format(time.RFC3339),
		ocispec.AnnotationTitle:   b.m.Name,
		AnnotationName:            b.m.Name,
		AnnotationBuildID:         b.m.BuildID,
	}
	if b.m.Tool.IngotVersion != "" {
		a[ocispec.AnnotationVersion] = b.m.Tool.IngotVersion
	}
	if b.m.OS != nil {
		a[AnnotationOS] = strings.TrimSpace(b.m.OS.ID + " " + b.m.OS.VersionID)
	}
	return a
}

// debianArch maps a Debian architecture to an OCI platform's architecture and variant.
var debianArch = map[string][2]string{
	"amd64": {"amd64", ""}, "arm64": {"arm64", ""}, "armhf": {"arm", "v7"}, "armel": {"arm", "v5"},
	"i386": {"386", ""}, "ppc64el": {"ppc64le", ""}, "s390x": {"s390x", ""}, "riscv64": {"riscv64", ""},
	"mips64el": {"mips64le", ""}, "loong64": {"loong64", ""},
}

// platformOf is the image's platform: Linux, on the architecture most of its packages are built
// for (manifest.json records each package's). A build without package records was made on this
// machine's architecture, since ingot boots its build machine with the host's QEMU.
func platformOf(m *manifest.Manifest) ocispec.Platform {
	count := map[string]int{}
	best := ""
	for _, p := range m.Packages {
		if _, ok := debianArch[p.Arch]; !ok {
			continue
		}
		count[p.Arch]++
		if best == "" || count[p.Arch] > count[best] || count[p.Arch] == count[best] && p.Arch < best {
			best = p.Arch
		}
	}
	if a, ok := debianArch[best]; ok {
		return ocispec.Platform{OS: "linux", Architecture: a[0], Variant: a[1]}
	}
	return ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// readSums reads SHA256SUMS ("HASH  PATH" lines, as sha256sum writes them) into path → hash.
func readSums(p string) (map[string]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read checksums: %w", err)
	}
	defer f.Close()
	return parseSums(f, p)
}

func parseSums(r io.Reader, name string) (map[string]string, error) {
	list, bad, err := manifest.ParseSums(r)
	if len(bad) > 0 {
		return nil, fmt.Errorf("%s:%d: %s", name, bad[0].Line, bad[0].Msg)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := make(map[string]string, len(list))
	for _, s := range list {
		out[s.File] = s.SHA256
	}
	return out, nil
}

// hashFile is the sha256 digest of the file at p.
func hashFile(ctx context.Context, p string) (digest.Digest, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil))), nil
}

// ctxReader stops a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// source is what a push copies from: the build's files where they are, and the blobs made for
// the push (configs, manifests) in memory.
type source struct {
	mem   *memory.Store
	files map[digest.Digest]string
}

func newSource() *source {
	return &source{mem: memory.New(), files: map[digest.Digest]string{}}
}

// Fetch returns the file itself for a file's blob: the uploader reads it at offsets to resume.
func (s *source) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if p, ok := s.files[desc.Digest]; ok {
		return os.Open(p)
	}
	return s.mem.Fetch(ctx, desc)
}

func (s *source) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if _, ok := s.files[desc.Digest]; ok {
		return true, nil
	}
	return s.mem.Exists(ctx, desc)
}

// push stores data in memory, described as mediaType.
func (s *source) push(ctx context.Context, mediaType string, data []byte) (ocispec.Descriptor, error) {
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	ok, err := s.mem.Exists(ctx, desc)
	if err == nil && !ok {
		err = s.mem.Push(ctx, desc, bytes.NewReader(data))
	}
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

var errNoQcow2 = errors.New("the build has no qcow2 output")
