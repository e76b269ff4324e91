package bake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/internal/digest"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/provenance"
	"github.com/ingot-build/ingot/recipes"
	"github.com/ingot-build/ingot/sbom"
	"github.com/ingot-build/ingot/sign"
)

// outputSpecs turns a recipe's outputs into what disk.ProduceAll makes, refusing, each at its
// place in the recipe: what disk cannot make (OutputSpec.Validate), outputs that clash
// (disk.Clashes: the same file twice, or a bmap bmaptool would pair with another image; at the
// later output of the pair), and download destinations that would land on a file of the output
// dir (checkDownloads). Check runs it while planning; convert uses the specs.
func outputSpecs(r *recipes.Recipe) ([]disk.OutputSpec, error) {
	fw := "bios"
	if strings.HasPrefix(r.Machine.Firmware, "uefi") {
		fw = "uefi"
	}
	var specs []disk.OutputSpec
	var at []int // the index in r.Outputs of each spec: invalid outputs have none
	var errs []error
	for i, o := range r.Outputs {
		spec := disk.OutputSpec{
			Name: r.Name, Format: o.Format, Compress: o.Compress, Subformat: o.Subformat, Bmap: o.Bmap, Shrink: o.Shrink,
			CPUs: r.Machine.CPUs, MemoryMiB: int64(r.Machine.MemoryMiB), Firmware: fw,
		}
		if err := spec.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: outputs[%d]: %w", o.Pos, i, err))
			continue
		}
		if o.Format == "ova" && r.Machine.Arch == recipes.ArchAArch64 {
			// disk.OVF describes x86 virtual hardware; an importer would make an x86 VM.
			errs = append(errs, fmt.Errorf("%s: outputs[%d]: an OVA describes an x86_64 virtual machine, and this recipe builds aarch64; write qcow2, vmdk, vhdx or raw", o.Pos, i))
			continue
		}
		specs = append(specs, spec)
		at = append(at, i)
	}
	for _, c := range disk.Clashes(specs) {
		first, second := at[c.First], at[c.Second]
		errs = append(errs, fmt.Errorf("%s: outputs[%d] and the output at %s (outputs[%d]): %w",
			r.Outputs[second].Pos, second, r.Outputs[first].Pos, first, c))
	}
	errs = append(errs, checkDownloads(r, specs, at)...)
	return specs, errors.Join(errs...)
}

// checkDownloads refuses the relative download destinations (published in the output dir) that
// would land on another file there: manifest.json, SHA256SUMS, a file of an output (every name
// OutputSpec.Files gives, NAME.raw.bmap and NAME-minimal.raw as well as NAME.FORMAT), the output
// dir itself, or another download (the same path, or one inside the other). Otherwise publishing
// would replace a file the manifest has already hashed, or fail half-way. at maps each spec to
// its index in r.Outputs.
func checkDownloads(r *recipes.Recipe, specs []disk.OutputSpec, at []int) []error {
	taken := map[string]string{"manifest.json": "the build's manifest", "SHA256SUMS": "the build's checksum list", manifest.InventoryFile: "the build's file inventory",
		sbom.SPDXFile: "the build's SBOM", sbom.CycloneDXFile: "the build's SBOM", provenance.FileName: "the build's provenance"}
	for _, f := range []string{"manifest.json", "SHA256SUMS", sbom.SPDXFile, sbom.CycloneDXFile} {
		taken[f+sign.SigExt] = "a signature of the build's"
	}
	for _, f := range driftReports {
		taken[f] = "the build's drift report"
	}
	for j, s := range specs {
		for _, f := range s.Files() {
			taken[f] = fmt.Sprintf("a file of outputs[%d] (%s)", at[j], r.Outputs[at[j]].Pos)
		}
	}
	type download struct {
		step int
		dst  string // cleaned, slash-separated
		pos  recipes.Pos
	}
	var seen []download
	var errs []error
	for i, s := range r.Provision {
		if s.File == nil || s.File.Direction != "download" || filepath.IsAbs(s.File.Dst) {
			continue
		}
		field := fmt.Sprintf("provision[%d].file.dst", i)
		pos := posOf(r, field, s.Pos)
		d := download{step: i, dst: filepath.ToSlash(filepath.Clean(s.File.Dst)), pos: pos}
		top, _, _ := strings.Cut(d.dst, "/")
		switch {
		case d.dst == ".":
			errs = append(errs, fmt.Errorf("%s: %s: %q is the output directory itself; name a path inside it, e.g. downloads/", pos, field, s.File.Dst))
			continue
		case taken[top] != "" && top == d.dst:
			errs = append(errs, fmt.Errorf("%s: %s: %q would overwrite %s, %s; choose another name, e.g. downloads/%s", pos, field, s.File.Dst, top, taken[top], d.dst))
		case taken[top] != "":
			errs = append(errs, fmt.Errorf("%s: %s: %q would need %s to be a directory, but it is %s; choose another path, e.g. downloads/%s", pos, field, s.File.Dst, top, taken[top], d.dst))
		}
		for _, o := range seen {
			if d.dst == o.dst || strings.HasPrefix(d.dst, o.dst+"/") || strings.HasPrefix(o.dst, d.dst+"/") {
				errs = append(errs, fmt.Errorf("%s: %s: %q overlaps %q, the destination of provision[%d] at %s: one download would replace the other or land inside it; give each its own path",
					pos, field, s.File.Dst, o.dst, o.step, o.pos))
				break
			}
		}
		seen = append(seen, d)
	}
	return errs
}

func (b *build) stagingDir() string {
	return filepath.Join(b.opts.OutDir, stagingPrefix+b.id)
}

// convert makes every output at once into a staging dir beside the output dir (disk.ProduceAll:
// each output checked and hashed, all or nothing), then moves the downloads published with them
// in beside them.
func (b *build) convert(ctx context.Context) error {
	staging := b.stagingDir()
	if err := os.MkdirAll(b.opts.OutDir, 0o755); err != nil {
		return fmt.Errorf("output dir: %w", err)
	}
	sd, err := claimDir(staging, false)
	if err != nil {
		return fmt.Errorf("staging dir: %w", err)
	}
	b.onCleanup("remove the staging dir", func(context.Context) error {
		if b.failed && b.testFailed && b.opts.KeepOnFailure {
			b.log.Warn("kept the outputs whose test boot failed", "dir", staging)
			return sd.Keep("kept by ingot build --keep-on-failure: outputs whose test boot failed; remove this directory when done\n")
		}
		return sd.Remove()
	})
	specs, err := outputSpecs(b.r)
	if err != nil {
		return err
	}
	var arts []disk.Artifact
	err = b.waits.track(func() (err error) {
		arts, err = disk.ProduceAll(ctx, b.diskPath, "qcow2", specs, staging, b.reporter())
		return err
	})
	var failed *disk.OutputError
	errors.As(err, &failed)
	if failed != nil {
		return fmt.Errorf("%s: outputs[%d]: %w", b.r.Outputs[failed.Index].Pos, failed.Index, err)
	}
	if err != nil {
		return err
	}
	for _, a := range arts {
		b.log.Info("output ready", "file", filepath.Base(a.Path), "size", a.Size, "sha256", a.SHA256)
		b.outputs = append(b.outputs, manifest.File{File: filepath.Base(a.Path), Format: a.Format, Size: a.Size, SHA256: a.SHA256})
	}
	for _, rel := range b.downloads {
		if err := publishDownload(filepath.Join(b.workDir, "downloads", rel), staging, rel); err != nil {
			return err
		}
		files, err := hashTree(ctx, staging, rel)
		if err != nil {
			return fmt.Errorf("hash the download %s: %w", rel, err)
		}
		b.downloaded = append(b.downloaded, files...)
	}
	return nil
}

// publishDownload moves a downloaded file or tree to rel in the staging dir, and refuses to
// replace anything there: checkDownloads keeps destinations apart from the outputs' files and
// from each other, and this makes sure of it where it counts, so that no file the manifest hashed
// is ever swapped for another. The staging dir is this build's alone (claimDir), so nothing can
// appear at rel between the check and the rename.
func publishDownload(src, staging, rel string) error {
	dst := filepath.Join(staging, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("publish the download %s: %w", rel, err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("publish the download %s: the output dir already has a %s; refusing to replace it", rel, rel)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("publish the download %s: %w", rel, err)
	}
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("publish the download %s: %w", rel, err)
	}
	return nil
}

// hashTree lists the regular files at rel under dir (rel itself, or the files of a tree), with
// their sizes and sha256, by slash-separated path relative to dir.
func hashTree(ctx context.Context, dir, rel string) ([]manifest.File, error) {
	var out []manifest.File
	err := filepath.WalkDir(filepath.Join(dir, rel), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		sum, n, err := digest.File(ctx, p, nil)
		if err != nil {
			return err
		}
		name, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, manifest.File{File: filepath.ToSlash(name), Format: "download", Size: n, SHA256: sum})
		return nil
	})
	return out, err
}

// record writes manifest.json and SHA256SUMS, then publishes the staging dir as OutDir/NAME in
// one rename: the outputs appear together or not at all. A previous build's outputs are replaced.
func (b *build) record(ctx context.Context) error {
	m := &manifest.Manifest{
		Name: b.r.Name, BuildID: b.id, Started: b.started.UTC(), Finished: time.Now().UTC(),
		Recipe: manifest.Recipe{File: b.r.File, Inputs: b.inputs}, Tool: b.opts.Tool, Firmware: string(b.fwKind), Arch: b.arch(),
		Steps: b.timings, Provisioners: b.provTimings, Outputs: b.outputs, Downloads: b.downloaded, Packages: b.packages,
	}
	if data, err := os.ReadFile(b.r.File); err == nil {
		sum := sha256.Sum256(data)
		m.Recipe.SHA256 = hex.EncodeToString(sum[:])
	} else if data, ok := recipes.CatalogSource(strings.TrimPrefix(b.r.File, "catalog:")); ok {
		sum := sha256.Sum256(data)
		m.Recipe.SHA256 = hex.EncodeToString(sum[:])
	}
	if d := b.r.Source.Disk; d != nil {
		m.Inputs = append(m.Inputs, manifest.Input{Kind: "disk", URL: d.URL, SHA256: b.baseSum})
	}
	if i := b.r.Source.ISO; i != nil {
		m.Inputs = append(m.Inputs, manifest.Input{Kind: "iso", URL: i.URL, SHA256: b.baseSum})
	}
	if i := b.r.Source.Image; i != nil {
		m.Inputs = append(m.Inputs, manifest.Input{Kind: "image", URL: "image:" + i.Name, SHA256: b.baseLayer})
	}
	m.Image = b.image
	m.BuildMachine = b.buildMachine
	m.OS = b.os
	m.Drift = b.drift
	sort.Slice(m.Packages, func(i, j int) bool { return m.Packages[i].Name < m.Packages[j].Name })
	staging := b.stagingDir()
	sums := slices.Concat(b.outputs, b.downloaded)
	if b.files != nil {
		ref, err := manifest.WriteInventory(filepath.Join(staging, manifest.InventoryFile), b.files)
		if err != nil {
			return err
		}
		m.Inventory = &ref
		sums = append(sums, manifest.File{File: ref.File, Format: "inventory", SHA256: ref.SHA256})
	}
	sboms, err := b.writeSBOMs(m)
	if err != nil {
		return err
	}
	sums = append(sums, sboms...)
	if err := manifest.Write(filepath.Join(staging, "manifest.json"), m); err != nil {
		return err
	}
	if err := manifest.WriteSums(filepath.Join(staging, "SHA256SUMS"), sums); err != nil {
		return err
	}
	if err := b.signRecord(ctx, m, sboms); err != nil {
		return err
	}
	b.manifest = m
	switch {
	case len(b.driftCrossed) > 0:
		q := b.quarantineDir()
		if err := publishDir(staging, q); err != nil {
			return fmt.Errorf("quarantine the outputs: %w", err)
		}
		return &DriftError{Baseline: b.drift.Baseline, Crossed: b.driftCrossed, Quarantine: q}
	case b.skipPublish:
		b.log.Info("nothing differs from the baseline beyond the noise list: published nothing (--skip-if-same)", "baseline", b.drift.Baseline, "dir", b.outDir)
		return nil
	}
	if err := publishDir(staging, b.outDir); err != nil {
		return err
	}
	return b.nameImage(ctx)
}

// publishDir renames staging to dst, moving an existing dst aside first and removing it after.
func publishDir(staging, dst string) error {
	old := ""
	if _, err := os.Stat(dst); err == nil {
		old = staging + ".old"
		if err := os.Rename(dst, old); err != nil {
			return fmt.Errorf("move the previous outputs aside: %w", err)
		}
	}
	if err := os.Rename(staging, dst); err != nil {
		if old != "" {
			_ = os.Rename(old, dst)
		}
		return fmt.Errorf("publish %s: %w", dst, err)
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}
