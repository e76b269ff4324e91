package bake

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/images"
)

// ManifestImage is where the build's disk was kept in the image store.
type ManifestImage struct {
	Name   string `json:"name"`
	Layer  string `json:"layer"`
	Parent string `json:"parent,omitempty"`
}

// fetchImage resolves source.image: the build disk will be an overlay on the stored layer.
func (b *build) fetchImage(ctx context.Context) error {
	src := b.r.Source.Image
	if b.opts.Images == nil {
		return fmt.Errorf("%s: source.image: this build has no image store", src.Pos)
	}
	img, chain, err := b.opts.Images.Lookup(src.Name)
	if err != nil {
		return fmt.Errorf("%s: source.image: %w", src.Pos, err)
	}
	b.base, b.baseFormat = chain[0].Path, chain[0].Format
	b.baseSum, b.baseLayer = img.Layer, img.Layer
	b.log.Info("starting from a stored image", "image", img.Name, "layer", img.Layer[:12], "layers", len(chain))
	return nil
}

// storeBase makes a fetched cloud image a base layer of the image store, so the build's overlay,
// and the layer kept from it, back on a file the store owns (the source cache may be pruned).
func (b *build) storeBase(ctx context.Context, format string) error {
	if b.opts.Images == nil || b.r.Source.Disk == nil {
		return nil
	}
	l, err := b.opts.Images.AddBase(ctx, b.base, b.baseSum, format)
	if err != nil {
		return err
	}
	b.base, b.baseLayer = l.Path, l.Digest
	return nil
}

// snapshot keeps the shut-down build disk as a named layer: only what the build changed, as a
// qcow2 overlay on its base layer (a standalone qcow2 for installer builds).
func (b *build) snapshot(ctx context.Context) error {
	s := b.opts.Images
	if s == nil {
		return nil
	}
	tmpDir, err := s.TempDir()
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "layer.qcow2")
	co := disk.ConvertOptions{Format: "qcow2"}
	if b.baseLayer != "" {
		co.BackingFile, co.BackingFormat = b.base, b.baseFormat
	}
	if err := b.waits.track(func() error { return disk.Convert(ctx, b.diskPath, tmp, co) }); err != nil {
		return fmt.Errorf("write the layer: %w", err)
	}
	l, err := s.AddLayer(ctx, tmp, b.baseLayer)
	if err != nil {
		return err
	}
	if err := s.Tag(ctx, images.Image{Name: b.r.Name, Layer: l.Digest, Created: b.started.UTC(), Recipe: b.r.File, BuildID: b.id}); err != nil {
		return err
	}
	b.image = &ManifestImage{Name: b.r.Name, Layer: l.Digest, Parent: b.baseLayer}
	b.log.Info("kept in the image store", "image", b.r.Name, "layer", l.Digest[:12], "size", l.Size)
	return nil
}
