package bake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/google/renameio/v2"

	"github.com/ingot-build/ingot/internal/digest"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/provenance"
	"github.com/ingot-build/ingot/recipes"
	"github.com/ingot-build/ingot/sbom"
)

// writeSBOMs writes the build's SBOM into the staging dir: SPDX 2.3 always, CycloneDX 1.5 with
// Options.CycloneDX. It returns them as files for SHA256SUMS.
func (b *build) writeSBOMs(m *manifest.Manifest) ([]manifest.File, error) {
	in := sbom.Input{Manifest: m}
	if m.OS != nil {
		in.Distro, in.DistroVersion = m.OS.ID, m.OS.VersionID
	}
	type kind struct {
		name string
		make func(sbom.Input) ([]byte, error)
	}
	kinds := []kind{{sbom.SPDXFile, sbom.SPDX}}
	if b.opts.CycloneDX {
		kinds = append(kinds, kind{sbom.CycloneDXFile, sbom.CycloneDX})
	}
	var out []manifest.File
	for _, k := range kinds {
		data, err := k.make(in)
		if err != nil {
			return nil, fmt.Errorf("write the SBOM %s: %w", k.name, err)
		}
		p := filepath.Join(b.stagingDir(), k.name)
		if err := renameio.WriteFile(p, data, 0o644); err != nil {
			return nil, fmt.Errorf("write the SBOM: %w", err)
		}
		// Hashed as written: the bytes are at hand, no need to read the file back.
		sum := sha256.Sum256(data)
		out = append(out, manifest.File{File: k.name, Format: "sbom", Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
	}
	return out, nil
}

// signRecord, with a signing key (--sign-key), signs SHA256SUMS, the manifest and the SBOMs with
// minisign, and writes the provenance (an in-toto SLSA v1 statement in a DSSE envelope signed
// with the same key), all in the staging dir before it is published.
func (b *build) signRecord(ctx context.Context, m *manifest.Manifest, sboms []manifest.File) error {
	k := b.opts.SignKey
	if k == nil {
		return nil
	}
	files, err := recipeFiles(ctx, b.r)
	if err != nil {
		return fmt.Errorf("hash the recipe's files for the provenance: %w", err)
	}
	st := provenance.New(provenance.Input{Manifest: m, RecipeFiles: files, Variables: b.r.Variables})
	key, id, err := provenance.MinisignSigner(k.PrivateKey())
	if err != nil {
		return fmt.Errorf("sign the provenance: %w", err)
	}
	env, err := provenance.Sign(ctx, st, key, id)
	if err != nil {
		return err
	}
	staging := b.stagingDir()
	if err := renameio.WriteFile(filepath.Join(staging, provenance.FileName), append(env, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the provenance: %w", err)
	}
	toSign := []string{"SHA256SUMS", "manifest.json"}
	for _, f := range sboms {
		toSign = append(toSign, f.File)
	}
	for _, f := range toSign {
		if err := k.SignFile(filepath.Join(staging, f)); err != nil {
			return fmt.Errorf("sign %s: %w", f, err)
		}
	}
	b.log.Info("signed", "key", k.ID(), "files", toSign, "provenance", provenance.FileName)
	return nil
}

// recipeFiles lists the local files the recipe's steps read (scripts, and the files of uploads,
// a tree file by file), with their sha256, for the provenance: by path relative to the recipe's
// directory when inside it.
func recipeFiles(ctx context.Context, r *recipes.Recipe) ([]provenance.ResourceDescriptor, error) {
	var out []provenance.ResourceDescriptor
	seen := map[string]bool{}
	for _, s := range r.Secrets {
		seen[s.File] = true // a secret's file is no input anyone may see the hash of
	}
	add := func(p string) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		sum, _, err := digest.File(ctx, p, nil)
		if err != nil {
			return err
		}
		name := p
		if r.Dir != "" {
			if rel, err := filepath.Rel(r.Dir, p); err == nil && filepath.IsLocal(rel) {
				name = filepath.ToSlash(rel)
			}
		}
		out = append(out, provenance.ResourceDescriptor{URI: "file:" + name, Digest: map[string]string{"sha256": sum}})
		return nil
	}
	for _, s := range r.Provision {
		switch {
		case s.Shell != nil && s.Shell.Script != "":
			if err := add(s.Shell.Script); err != nil {
				return nil, err
			}
		case s.File != nil && s.File.Direction != "download":
			err := filepath.WalkDir(s.File.Src, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				return add(p)
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
