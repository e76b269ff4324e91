package bake

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/qemuimg"
	"github.com/ingot-build/ingot/manifest"
)

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
	h, err := b.imageHold(ctx)
	if err != nil {
		return err
	}
	if err := h.Keep(ctx, img.Layer); err != nil {
		return fmt.Errorf("%s: source.image: %w", src.Pos, err)
	}
	b.base, b.baseFormat = chain[0].Path, chain[0].Format
	b.baseSum, b.baseLayer = img.Layer, img.Layer
	b.rootLayer = chain[len(chain)-1].Digest
	b.log.Info("starting from a stored image", "image", img.Name, "layer", img.Layer[:12], "layers", len(chain))
	return nil
}

// storeBase makes a fetched cloud image a base layer of the image store, so the build's overlay,
// and the layer kept from it, back on a file the store owns (the source cache may be pruned).
func (b *build) storeBase(ctx context.Context, format string) error {
	if b.opts.Images == nil || b.r.Source.Disk == nil {
		return nil
	}
	h, err := b.imageHold(ctx)
	if err != nil {
		return err
	}
	l, err := b.opts.Images.AddBase(ctx, b.base, b.baseSum, format, h)
	if err != nil {
		return err
	}
	b.base, b.baseLayer, b.rootLayer = l.Path, l.Digest, l.Digest
	return nil
}

// imageHold is the build's hold on the store's layers it uses (its base, the layer it keeps)
// until it names its own at publish or ends: an interrupted build moves no name, and a killed
// one's layers are freed by the next build that names one.
func (b *build) imageHold(ctx context.Context) (*images.Hold, error) {
	if b.hold != nil {
		return b.hold, nil
	}
	h, err := b.opts.Images.NewHold(ctx)
	if err != nil {
		return nil, err
	}
	b.hold = h
	b.onCleanup("release the hold on stored layers", func(context.Context) error { return h.Release() })
	return h, nil
}

// snapshot keeps the shut-down build disk as a layer: only what the build changed, as a qcow2
// overlay on its base layer (a standalone qcow2 for installer builds). It is named only when the
// build publishes (nameImage).
func (b *build) snapshot(ctx context.Context) error {
	s := b.opts.Images
	if s == nil {
		return nil
	}
	h, err := b.imageHold(ctx)
	if err != nil {
		return err
	}
	tmpDir, err := s.TempDir()
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "layer.qcow2")
	co := qemuimg.ConvertOptions{InputFormat: "qcow2", Format: "qcow2"}
	if b.baseLayer != "" {
		co.BackingFile, co.BackingFormat = b.base, b.baseFormat
	}
	if err := b.waits.track(func() error { return qemuimg.Convert(ctx, b.diskPath, tmp, co) }); err != nil {
		return fmt.Errorf("write the layer: %w", err)
	}
	l, err := s.AddLayer(ctx, tmp, b.baseLayer, h)
	if err != nil {
		return err
	}
	b.image = &manifest.Image{Name: b.r.Name, Layer: l.Digest, Parent: b.baseLayer}
	b.log.Info("kept in the image store, to be named when the build publishes", "layer", l.Digest[:12], "size", l.Size)
	return nil
}

// nameImage moves the recipe's name in the image store to the layer the build kept. It runs
// once the outputs are published, so the name and the outputs always come from the same build.
func (b *build) nameImage(ctx context.Context) error {
	if b.image == nil {
		return nil
	}
	// The record first: a name is never without the record of the build it names (drift
	// against image:NAME reads it).
	record := []string{filepath.Join(b.outDir, "manifest.json")}
	if b.manifest.Inventory != nil {
		record = append(record, filepath.Join(b.outDir, b.manifest.Inventory.File))
	}
	if err := b.opts.Images.PutRecord(ctx, b.image.Layer, record); err != nil {
		return fmt.Errorf("the outputs are published in %s, but keeping the build's record with image %s failed: %w", b.outDir, b.image.Name, err)
	}
	freed, err := b.opts.Images.Tag(ctx, images.Image{Name: b.image.Name, Layer: b.image.Layer, Created: b.started.UTC(), Recipe: b.r.File, BuildID: b.id})
	if err != nil {
		return fmt.Errorf("the outputs are published in %s, but naming the image %s failed: %w", b.outDir, b.image.Name, err)
	}
	b.log.Info("named in the image store", "image", b.image.Name, "layer", b.image.Layer[:12], "freed layers", len(freed))
	return nil
}
