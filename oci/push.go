package oci

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ingot-build/ingot/internal/progress"
)

// ReferrersMode says how the build's records are attached as referrers of its manifest. They
// travel as layers of the manifest in every mode; referrers are for tools that look for an SBOM
// or a signature by subject (oras discover, policy engines).
type ReferrersMode string

const (
	// ReferrersAuto attaches them where the registry has the referrers API (distribution spec
	// 1.1), and nowhere else: the spec's fallback, an index tagged sha256-HEX, is an index of
	// artifacts, which some registries refuse (Quay answers HTTP 500).
	ReferrersAuto ReferrersMode = "auto"
	// ReferrersTagSchema attaches them through the API where there is one, and through the
	// referrers tag schema where there is not.
	ReferrersTagSchema ReferrersMode = "tags"
	// ReferrersOff attaches none.
	ReferrersOff ReferrersMode = "off"
)

// ContainerDiskUID is the user and group that own /disk/NAME.qcow2 in a KubeVirt containerDisk:
// KubeVirt's qemu runs as 107 (KubeVirt's docs, "containerDisk").
const ContainerDiskUID = 107

// ContainerDiskSuffix is added to the tag of the build for the tag of its containerDisk.
const ContainerDiskSuffix = "-containerdisk"

// PushOptions are PushBuild's.
type PushOptions struct {
	Remote
	// ContainerDisk also pushes a KubeVirt containerDisk of the build's qcow2 output, tagged
	// TAG-containerdisk.
	ContainerDisk bool
	// Referrers is how records are attached by subject; "" is ReferrersAuto.
	Referrers ReferrersMode
	// Platform overrides the platform read from the build's manifest.
	Platform *ocispec.Platform
	// ChunkSize is the size of one PATCH; 0 is DefaultChunkSize.
	ChunkSize int64
	// Attempts is how often a blob's upload is tried; 0 is DefaultAttempts.
	Attempts int
	// Concurrency is how many blobs go up at once; 0 is 3.
	Concurrency int
	// Progress shows each upload; nil shows nothing.
	Progress progress.Reporter
}

// Pushed is one manifest a push left in the registry.
type Pushed struct {
	Ref    Ref
	Digest string
	Size   int64
}

// PushResult is what PushBuild did.
type PushResult struct {
	// Build is the build's manifest, tagged as asked.
	Build Pushed
	// ContainerDisk is the containerDisk's, when one was asked for.
	ContainerDisk *Pushed
	// Referrers are the digests of the referrers attached, and ReferrersBy how: "api",
	// "tag schema", or "" when none were (the records are layers of Build only).
	Referrers   []string
	ReferrersBy string
	// Uploaded blobs and their bytes; Skipped blobs the registry had already (an interrupted
	// push run again skips what got there).
	Uploaded      int
	UploadedBytes int64
	Skipped       int
	// Requests counts the PATCH requests of chunked uploads.
	Requests int
}

// Digested is ref with the build's digest: what `ingot pull` takes.
func (p Pushed) Digested() string {
	r := p.Ref
	r.Reference.Reference = p.Digest
	return r.String()
}

// PushBuild pushes the build in the output directory dir to ref (oci://REGISTRY/REPO:TAG):
// the artifact described in the package doc, then the containerDisk and the referrers when
// asked for. Blobs the registry has already are not sent again; the manifest is pushed and
// tagged last, so a push that stops part-way leaves no tag naming an incomplete build.
func PushBuild(ctx context.Context, dir, ref string, opts PushOptions) (*PushResult, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	if r.Reference.Reference == "" || r.Digest() != "" {
		return nil, fmt.Errorf("%s: name a tag to push to (oci://REGISTRY/REPO:TAG)", ref)
	}
	if err := CheckInsecure(opts.Insecure); err != nil {
		return nil, err
	}
	switch opts.Referrers {
	case "":
		opts.Referrers = ReferrersAuto
	case ReferrersAuto, ReferrersTagSchema, ReferrersOff:
	default:
		return nil, fmt.Errorf("referrers %q: want auto, tags or off", opts.Referrers)
	}
	b, err := readBuild(ctx, dir, opts.Platform)
	if err != nil {
		return nil, err
	}
	repo, err := opts.repository(r)
	if err != nil {
		return nil, err
	}
	p := newPusher(repo, r, opts)
	res := &PushResult{}
	log := opts.log().With("registry", r.Registry, "repository", r.Repository)

	src := newSource()
	var layers []ocispec.Descriptor
	for _, f := range b.files {
		src.files[f.desc.Digest] = f.path
		layers = append(layers, f.desc)
	}
	cfg, err := b.config()
	if err != nil {
		return nil, err
	}
	cfgDesc, err := src.push(ctx, ConfigMediaType, cfg)
	if err != nil {
		return nil, err
	}
	p.u.names.Store(cfgDesc.Digest, "config")
	root, err := oras.PackManifest(ctx, src.mem, oras.PackManifestVersion1_1, ArtifactType, oras.PackManifestOptions{
		Layers: layers, ConfigDescriptor: &cfgDesc, ManifestAnnotations: b.annotations(),
	})
	if err != nil {
		return nil, fmt.Errorf("pack the manifest: %w", err)
	}
	log.Info("pushing build", "files", len(layers), "tag", r.Reference.Reference)
	if err := p.copy(ctx, src, root, r.Reference.Reference); err != nil {
		return nil, err
	}
	res.Build = Pushed{Ref: r, Digest: root.Digest.String(), Size: root.Size}

	if opts.ContainerDisk {
		cd, err := p.pushContainerDisk(ctx, b, root, r)
		if err != nil {
			return nil, fmt.Errorf("containerDisk: %w", err)
		}
		res.ContainerDisk = cd
	}

	if opts.Referrers != ReferrersOff {
		if err := p.attach(ctx, b, src, root, res, log); err != nil {
			return nil, fmt.Errorf("attach referrers: %w", err)
		}
	}
	res.Uploaded = int(p.u.stats.uploaded.Load())
	res.UploadedBytes = p.u.stats.bytes.Load()
	res.Skipped = int(p.u.stats.skipped.Load())
	res.Requests = int(p.u.stats.requests.Load())
	log.Info("pushed", "digest", res.Build.Digest, "uploaded", res.Uploaded, "bytes", res.UploadedBytes, "already_there", res.Skipped)
	return res, nil
}

// pusher pushes graphs to one repository through one uploader.
type pusher struct {
	repo        *remote.Repository
	u           *uploader
	concurrency int
	referrers   ReferrersMode
}

func newPusher(repo *remote.Repository, r Ref, opts PushOptions) *pusher {
	u := &uploader{
		Repository: repo,
		ref:        r,
		chunk:      opts.ChunkSize,
		attempts:   opts.Attempts,
		progress:   opts.Progress,
		names:      new(sync.Map),
		stats:      new(stats),
		backoff:    func(attempt int) time.Duration { return time.Duration(attempt) * 500 * time.Millisecond },
	}
	if u.chunk <= 0 {
		u.chunk = DefaultChunkSize
	}
	if u.attempts <= 0 {
		u.attempts = DefaultAttempts
	}
	if u.progress == nil {
		u.progress = progress.Nop()
	}
	c := opts.Concurrency
	if c <= 0 {
		c = 3
	}
	return &pusher{repo: repo, u: u, concurrency: c, referrers: opts.Referrers}
}

// copy pushes the graph under root that the registry lacks, then tags root.
func (p *pusher) copy(ctx context.Context, src *source, root ocispec.Descriptor, tag string) error {
	err := oras.CopyGraph(ctx, src, p.u, root, oras.CopyGraphOptions{
		Concurrency: p.concurrency,
		OnCopySkipped: func(_ context.Context, d ocispec.Descriptor) error {
			if !isManifest(d.MediaType) {
				p.u.stats.skipped.Add(1)
			}
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("push to %s/%s: %w", p.u.ref.Registry, p.u.ref.Repository, err)
	}
	if tag == "" {
		return nil
	}
	if err := p.repo.Tag(ctx, root, tag); err != nil {
		return fmt.Errorf("tag %s: %w", tag, err)
	}
	return nil
}

// pushContainerDisk pushes a KubeVirt containerDisk of the build's qcow2 output: an OCI image
// whose one layer holds /disk/NAME.qcow2, owned by 107:107, tagged TAG-containerdisk and
// annotated with the build's digest. The layer is a plain tar (a qcow2 barely compresses, and
// gzip would cost more time than it saves), made deterministic (times from the build) so that
// a second push of the same build finds it there.
func (p *pusher) pushContainerDisk(ctx context.Context, b *build, build ocispec.Descriptor, r Ref) (*Pushed, error) {
	var qcow2 *file
	for i, f := range b.files {
		if f.desc.Annotations[AnnotationFormat] == "qcow2" {
			qcow2 = &b.files[i]
			break
		}
	}
	if qcow2 == nil {
		return nil, errNoQcow2
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(b.dir)), ".ingot-containerdisk-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	layerPath := filepath.Join(tmp, "layer.tar")
	layer, err := writeDiskTar(ctx, layerPath, qcow2.path, path.Base(qcow2.rel), b.created)
	if err != nil {
		return nil, err
	}
	src := newSource()
	src.files[layer.Digest] = layerPath
	p.u.names.Store(layer.Digest, "containerdisk:"+path.Base(qcow2.rel))
	img := ocispec.Image{
		Created:  &b.created,
		Platform: b.platform,
		Config:   ocispec.ImageConfig{Labels: map[string]string{AnnotationBuild: build.Digest.String()}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}},
		History:  []ocispec.History{{Created: &b.created, CreatedBy: "ingot push --containerdisk", Comment: "/disk/" + path.Base(qcow2.rel)}},
	}
	cfg, err := json.Marshal(img)
	if err != nil {
		return nil, err
	}
	cfgDesc, err := src.push(ctx, ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		return nil, err
	}
	p.u.names.Store(cfgDesc.Digest, "containerdisk:config")
	root, err := oras.PackManifest(ctx, src.mem, oras.PackManifestVersion1_1, "", oras.PackManifestOptions{
		Layers:           []ocispec.Descriptor{layer},
		ConfigDescriptor: &cfgDesc,
		ManifestAnnotations: map[string]string{
			ocispec.AnnotationCreated: b.created.Format(time.RFC3339),
			ocispec.AnnotationTitle:   b.m.Name + " containerDisk",
			AnnotationBuild:           build.Digest.String(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("pack the manifest: %w", err)
	}
	tag := r.Reference.Reference + ContainerDiskSuffix
	if err := p.copy(ctx, src, root, tag); err != nil {
		return nil, err
	}
	cr := r
	cr.Reference.Reference = tag
	return &Pushed{Ref: cr, Digest: root.Digest.String(), Size: root.Size}, nil
}

// writeDiskTar writes the containerDisk's layer to dst: the directory disk/ and disk/name, the
// contents of qcow2, both owned by ContainerDiskUID, and returns the layer's descriptor.
func writeDiskTar(ctx context.Context, dst, qcow2, name string, mtime time.Time) (ocispec.Descriptor, error) {
	in, err := os.Open(qcow2)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer out.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, h)}
	tw := tar.NewWriter(cw)
	hdrs := []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o755, Uid: ContainerDiskUID, Gid: ContainerDiskUID, ModTime: mtime, Format: tar.FormatPAX},
		{Typeflag: tar.TypeReg, Name: "disk/" + name, Mode: 0o644, Size: st.Size(), Uid: ContainerDiskUID, Gid: ContainerDiskUID, ModTime: mtime, Format: tar.FormatPAX},
	}
	if err := tw.WriteHeader(hdrs[0]); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := tw.WriteHeader(hdrs[1]); err != nil {
		return ocispec.Descriptor{}, err
	}
	if _, err := io.Copy(tw, ctxReader{ctx, in}); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("write the containerDisk layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := out.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayer,
		Digest:    digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil))),
		Size:      cw.n,
	}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// attach attaches the build's records as referrers of its manifest (root): one artifact per
// record, its signature with it, artifactType the record's media type. The blobs are layers of
// root already, so only the small manifests go up.
func (p *pusher) attach(ctx context.Context, b *build, src *source, root ocispec.Descriptor, res *PushResult, log *slog.Logger) error {
	if err := p.repo.Referrers(ctx, root, "", func([]ocispec.Descriptor) error { return nil }); err != nil {
		log.Warn("cannot tell whether the registry has the referrers API; the records travel as layers of the build only", "err", err)
		return nil
	}
	// Referrers settled the capability: setting it to true fails when it is false. When it is,
	// oras-go indexes each referrer pushed below under the tag schema.
	apiSupported := p.repo.SetReferrersCapability(true) == nil
	switch {
	case apiSupported:
		res.ReferrersBy = "api"
	case p.referrers == ReferrersTagSchema:
		res.ReferrersBy = "tag schema"
	default:
		log.Info("the registry has no referrers API: the records travel as annotated layers of the build's manifest (docs/oci.md)")
		return nil
	}
	sigs := map[string]ocispec.Descriptor{}
	for _, f := range b.files {
		if f.desc.Annotations[AnnotationRole] == RoleSignature {
			sigs[f.desc.Annotations[AnnotationSignatureOf]] = f.desc
		}
	}
	for _, f := range b.files {
		if f.desc.Annotations[AnnotationRole] != RoleRecord {
			continue
		}
		layers := []ocispec.Descriptor{f.desc}
		if s, ok := sigs[f.rel]; ok {
			layers = append(layers, s)
		}
		desc, err := oras.PackManifest(ctx, src.mem, oras.PackManifestVersion1_1, f.desc.MediaType, oras.PackManifestOptions{
			Subject: &root,
			Layers:  layers,
			ManifestAnnotations: map[string]string{
				ocispec.AnnotationCreated: b.created.Format(time.RFC3339),
				ocispec.AnnotationTitle:   f.rel,
				AnnotationBuild:           root.Digest.String(),
			},
		})
		if err != nil {
			return fmt.Errorf("pack the referrer of %s: %w", f.rel, err)
		}
		if err := p.copy(ctx, src, desc, ""); err != nil {
			return fmt.Errorf("%s: %w", f.rel, err)
		}
		res.Referrers = append(res.Referrers, desc.Digest.String())
	}
	log.Info("attached the records as referrers", "count", len(res.Referrers), "by", res.ReferrersBy)
	return nil
}
