package bake

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/ingot-build/ingot/internal/digest"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/source"
)

// inputsDigest hashes everything that decides what the build publishes: ingot's output version,
// the recipe's canonical form (its source pin, machine, cloud-init, each step with the bytes of
// the files it reads, generalize and outputs; never its formatting or comments) and, for a
// source.image, the layer the name holds now. The manifest records it (recipe.inputs_sha256).
//
// A source pinned by a checksum file (sha256: file:URL) is resolved, which fetches the checksum
// file only, so that a new entry there is a new input.
func (b *build) inputsDigest(ctx context.Context) (string, error) {
	c, err := b.r.Canonical()
	if err != nil {
		return "", err
	}
	base := ""
	src := b.r.Source
	switch {
	case src.Image != nil && b.opts.Images != nil:
		img, _, err := b.opts.Images.Lookup(src.Image.Name)
		if err != nil {
			return "", fmt.Errorf("%s: source.image: %w", src.Image.Pos, err)
		}
		base = img.Layer
	case src.Disk != nil && strings.HasPrefix(src.Disk.Pin(), "file:"):
		if base, err = b.opts.Sources.Resolve(ctx, source.Input{URL: src.Disk.URL, SHA256: src.Disk.Pin()}); err != nil {
			return "", fmt.Errorf("%s: source.disk: %w", src.Disk.Pos, err)
		}
	case src.ISO != nil && strings.HasPrefix(src.ISO.Pin(), "file:"):
		if base, err = b.opts.Sources.Resolve(ctx, source.Input{URL: src.ISO.URL, SHA256: src.ISO.Pin()}); err != nil {
			return "", fmt.Errorf("%s: source.iso: %w", src.ISO.Pos, err)
		}
	}
	parts := [][]byte{[]byte(OutputVersion), c, []byte(base)}
	if o := b.opts.TestBoot; o != "" && o != b.r.Test.Boot {
		// Published without the recipe's test boots (or with more): not what the recipe says.
		parts = append(parts, []byte("test.boot="+o))
	}
	return digestOf(parts...), nil
}

// upToDate returns the manifest of the build published in the output dir if it was made from
// inputs (its recipe.inputs_sha256) and every file it published still has the sha256 it
// recorded: then there is nothing to do. Any doubt (no manifest, another ingot's, a file edited
// or gone) is "not up to date", and the build runs.
//
// A recipe with a step that says cache: false is never up to date: such a step says its result
// depends on more than its inputs (the network, the date), so the build runs it.
func (b *build) upToDate(ctx context.Context, inputs string) (*manifest.Manifest, bool) {
	for _, s := range b.r.Provision {
		if s.NoCache {
			return nil, false
		}
	}
	m, err := manifest.Read(filepath.Join(b.outDir, "manifest.json"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false
	case err != nil:
		b.log.Info("the published build's manifest is unreadable: building", "err", err)
		return nil, false
	case m.Recipe.Inputs != inputs:
		return nil, false
	}
	for _, f := range append(append([]manifest.File{}, m.Outputs...), m.Downloads...) {
		sum, _, err := digest.File(ctx, filepath.Join(b.outDir, filepath.FromSlash(f.File)), nil)
		if err != nil || sum != f.SHA256 {
			b.log.Info("a published file is not what the manifest says: building", "file", f.File, "err", err)
			return nil, false
		}
	}
	return m, true
}
