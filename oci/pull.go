package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	orasfile "oras.land/oras-go/v2/content/file"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/manifest"
)

// ErrMismatch marks a pull that fetched something other than what it was promised: a blob or
// manifest whose digest is not the one named, or records that disagree with the files.
var ErrMismatch = errors.New("content does not match its digest or records")

// PullOptions are Pull's.
type PullOptions struct {
	Remote
	// Verify, when not nil, checks the complete staged directory before it is published (cmd
	// passes the signature checks of package sign). An error refuses the pull.
	Verify func(ctx context.Context, dir string) error
	// Concurrency is how many blobs come down at once; 0 is 3.
	Concurrency int
	// Progress shows each download; nil shows nothing.
	Progress progress.Reporter
}

// PullResult is what Pull published.
type PullResult struct {
	Ref    Ref
	Digest string
	// Dir is the directory published, Files its files (slash-separated, sorted as the manifest
	// lists them) and Bytes their size.
	Dir   string
	Files []string
	Bytes int64
	// Config is the build's config: its platform and what the build was.
	Config Config
	// Summed is how many files SHA256SUMS lists, each checked.
	Summed int
}

// Pull fetches the build at ref (oci://REGISTRY/REPO@sha256:…; a digest, since only a digest
// says what is expected) into the new directory out. Every blob is checked against its digest
// as it is written; then SHA256SUMS against the files, and manifest.json's outputs against
// SHA256SUMS; then opts.Verify. Only when all of that holds is the staged directory renamed to
// out, in one step: a pull that fails publishes nothing, and removes what it staged.
func Pull(ctx context.Context, ref, out string, opts PullOptions) (*PullResult, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	if r.Digest() == "" {
		return nil, fmt.Errorf("%s: pull by digest (oci://REGISTRY/REPO@sha256:…): a tag can name something else tomorrow", ref)
	}
	if err := CheckInsecure(opts.Insecure); err != nil {
		return nil, err
	}
	out = filepath.Clean(out)
	if err := checkOut(out); err != nil {
		return nil, err
	}
	repo, err := opts.repository(r)
	if err != nil {
		return nil, err
	}
	root, m, err := fetchBuildManifest(ctx, repo, r)
	if err != nil {
		return nil, err
	}
	cfgData, err := content.FetchAll(ctx, repo, m.Config)
	if err != nil {
		return nil, fmt.Errorf("fetch the config: %w", mismatch(err))
	}
	res := &PullResult{Ref: r, Digest: root.Digest.String(), Dir: out}
	if err := json.Unmarshal(cfgData, &res.Config); err != nil {
		return nil, fmt.Errorf("the config: %w: %w", ErrMismatch, err)
	}
	byName := map[string]ocispec.Descriptor{}
	for _, l := range m.Layers {
		name := l.Annotations[ocispec.AnnotationTitle]
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		if _, dup := byName[name]; dup {
			return nil, fmt.Errorf("layer %s: %w: %s is named twice", l.Digest, ErrMismatch, name)
		}
		byName[name] = l
		res.Files = append(res.Files, name)
		res.Bytes += l.Size
	}

	stage, err := os.MkdirTemp(filepath.Dir(out), ".ingot-pull-")
	if err != nil {
		return nil, fmt.Errorf("stage the pull: %w", err)
	}
	published := false
	defer func() {
		if !published {
			os.RemoveAll(stage)
		}
	}()
	if err := download(ctx, repo, root, stage, opts); err != nil {
		return nil, err
	}
	if res.Summed, err = checkRecords(stage, byName); err != nil {
		return nil, err
	}
	if opts.Verify != nil {
		if err := opts.Verify(ctx, stage); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(stage, out); err != nil {
		return nil, fmt.Errorf("publish %s: %w", out, err)
	}
	published = true
	opts.log().Info("pulled", "ref", r.String(), "dir", out, "files", len(res.Files), "bytes", res.Bytes)
	return res, nil
}

// checkOut refuses an out that exists, unless it is an empty directory (rename replaces one).
func checkOut(out string) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("--out %s: %w", out, err)
	case len(entries) > 0:
		return fmt.Errorf("--out %s: exists and is not empty: pull into a new directory", out)
	}
	if st, err := os.Stat(filepath.Dir(out)); err != nil || !st.IsDir() {
		return fmt.Errorf("--out %s: its parent directory must exist", out)
	}
	return nil
}

// fetchBuildManifest fetches and checks the manifest r names: its bytes have r's digest, and it
// is an ingot build's.
func fetchBuildManifest(ctx context.Context, repo *remote.Repository, r Ref) (ocispec.Descriptor, *ocispec.Manifest, error) {
	desc, rc, err := repo.FetchReference(ctx, r.Digest())
	if err != nil {
		return desc, nil, fmt.Errorf("fetch %s: %w", r, err)
	}
	defer rc.Close()
	if desc.Digest.String() != r.Digest() {
		return desc, nil, fmt.Errorf("fetch %s: %w: the registry described %s", r, ErrMismatch, desc.Digest)
	}
	data, err := content.ReadAll(rc, desc) // checks size and digest of the bytes themselves
	if err != nil {
		return desc, nil, fmt.Errorf("fetch %s: %w", r, mismatch(err))
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return desc, nil, fmt.Errorf("%s: not an OCI image manifest: %w", r, err)
	}
	if m.MediaType != ocispec.MediaTypeImageManifest || m.ArtifactType != ArtifactType || m.Config.MediaType != ConfigMediaType {
		return desc, nil, fmt.Errorf("%s is not an ingot build (mediaType %q, artifactType %q, config %q; want an image manifest of artifactType %s)",
			r, m.MediaType, m.ArtifactType, m.Config.MediaType, ArtifactType)
	}
	return desc, &m, nil
}

// mismatch marks oras-go's digest and size errors as ErrMismatch.
func mismatch(err error) error {
	if errors.Is(err, content.ErrMismatchedDigest) || errors.Is(err, content.ErrTrailingData) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", ErrMismatch, err)
	}
	return err
}

// checkName refuses a layer title that is no plain relative path inside the directory.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: a layer without a title (%s)", ErrMismatch, ocispec.AnnotationTitle)
	}
	if !filepath.IsLocal(filepath.FromSlash(name)) || strings.Contains(name, "\\") || path.Clean(name) != name {
		return fmt.Errorf("%w: %q is not a path inside the directory", ErrMismatch, name)
	}
	return nil
}

// download copies the build's blobs into stage with oras-go's file store, which checks each
// against its digest while writing it and removes what fails.
func download(ctx context.Context, repo *remote.Repository, root ocispec.Descriptor, stage string, opts PullOptions) error {
	store, err := orasfile.New(stage)
	if err != nil {
		return err
	}
	store.DisableOverwrite = true
	defer store.Close()
	rep := opts.Progress
	if rep == nil {
		rep = progress.Nop()
	}
	c := opts.Concurrency
	if c <= 0 {
		c = 3
	}
	src := &progressFetcher{ReadOnlyStorage: repo, rep: rep}
	err = oras.CopyGraph(ctx, src, store, root, oras.CopyGraphOptions{Concurrency: c})
	if err != nil {
		return fmt.Errorf("download: %w", mismatch(err))
	}
	return store.Close()
}

// progressFetcher reports the bytes read of each blob.
type progressFetcher struct {
	content.ReadOnlyStorage
	rep progress.Reporter
}

func (p *progressFetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := p.ReadOnlyStorage.Fetch(ctx, desc)
	name := desc.Annotations[ocispec.AnnotationTitle]
	if err != nil || name == "" {
		return rc, err
	}
	return &trackedReader{ReadCloser: rc, t: p.rep.Start(name, desc.Size)}, nil
}

type trackedReader struct {
	io.ReadCloser
	t progress.Tracker
}

func (t *trackedReader) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	t.t.Add(int64(n))
	if err != nil && !errors.Is(err, io.EOF) {
		t.t.Done(err)
	}
	return n, err
}

func (t *trackedReader) Close() error {
	t.t.Done(nil)
	return t.ReadCloser.Close()
}

// checkRecords checks the staged build against its records: SHA256SUMS lists files that are
// there, each with the sha256 of its layer (which the download checked the bytes against), and
// lists every output of manifest.json with the sha256 the manifest gives. It returns how many
// files SHA256SUMS lists.
func checkRecords(stage string, layers map[string]ocispec.Descriptor) (int, error) {
	sums, err := readSums(filepath.Join(stage, sumsFile))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrMismatch, err)
	}
	for name, sum := range sums {
		l, ok := layers[name]
		if !ok {
			return 0, fmt.Errorf("%s: %w: %s lists it, the artifact has no such file", name, ErrMismatch, sumsFile)
		}
		if l.Digest.Encoded() != sum {
			return 0, fmt.Errorf("%s: %w: %s lists sha256 %s, the file has %s", name, ErrMismatch, sumsFile, sum, l.Digest.Encoded())
		}
	}
	m, err := manifest.Read(filepath.Join(stage, manifestFile))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrMismatch, err)
	}
	for _, o := range m.Outputs {
		if s := sums[path.Clean(o.File)]; s != strings.ToLower(o.SHA256) {
			return 0, fmt.Errorf("%s: %w: %s gives sha256 %s, %s %q", o.File, ErrMismatch, manifestFile, o.SHA256, sumsFile, s)
		}
	}
	return len(sums), nil
}
