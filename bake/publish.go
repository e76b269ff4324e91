package bake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/internal/digest"
	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/recipes"
)

// OutputFile is one published artifact.
type OutputFile struct {
	File   string `json:"file"`
	Format string `json:"format"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// StepTiming is how long a step took: a pipeline step, or one provisioner of the recipe.
type StepTiming struct {
	Step string `json:"step"`
	// At is where a provisioner is written in the recipe (file:line:col).
	At      string  `json:"at,omitempty"`
	Seconds float64 `json:"seconds"`
	// Waiting is the part of Seconds spent waiting on the guest or on qemu-img; the rest is
	// ingot's own work.
	Waiting float64 `json:"waiting_seconds"`
}

// Manifest is manifest.json, written beside the outputs: what went in, what came out, and how.
type Manifest struct {
	Name     string    `json:"name"`
	BuildID  string    `json:"build_id"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Recipe   struct {
		File   string `json:"file"`
		SHA256 string `json:"sha256,omitempty"`
	} `json:"recipe"`
	Inputs   []ManifestInput `json:"inputs"`
	Tool     ToolInfo        `json:"tool"`
	Firmware string          `json:"firmware"`
	Steps    []StepTiming    `json:"steps"`
	// Provisioners times each recipe step of the provision stage, in order.
	Provisioners []StepTiming `json:"provisioners"`
	Outputs      []OutputFile `json:"outputs"`
	// Downloads are the files that download steps published beside the outputs (format
	// "download"), each file of a downloaded tree on its own; SHA256SUMS covers them too.
	Downloads []OutputFile `json:"downloads,omitempty"`
	Packages  []Package    `json:"packages"`
	// Image is where the built disk was kept in the image store.
	Image *ManifestImage `json:"image,omitempty"`
}

// ManifestInput is a pinned input.
type ManifestInput struct {
	Kind   string `json:"kind"`
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
}

// outputSpecs turns a recipe's outputs into what disk.Produce makes, refusing what it cannot make
// and outputs that clash (disk.Clashes: the same file twice, or a bmap bmaptool would pair with
// another image), each error at the position of the later output of the pair.
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
		specs = append(specs, spec)
		at = append(at, i)
	}
	for _, c := range disk.Clashes(specs) {
		first, second := at[c.First], at[c.Second]
		errs = append(errs, fmt.Errorf("%s: outputs[%d] and the output at %s (outputs[%d]): %w",
			r.Outputs[second].Pos, second, r.Outputs[first].Pos, first, c))
	}
	return specs, errors.Join(errs...)
}

func (b *build) stagingDir() string {
	return filepath.Join(b.opts.OutDir, stagingPrefix+b.id)
}

// convert makes every output at once into a staging dir beside the output dir; disk.Produce
// checks each (qemu-img check, non-empty, decompression and bmap checksums) and hashes it.
func (b *build) convert(ctx context.Context) error {
	staging := b.stagingDir()
	if err := os.MkdirAll(b.opts.OutDir, 0o755); err != nil {
		return fmt.Errorf("output dir: %w", err)
	}
	sd, err := claimDir(staging, false)
	if err != nil {
		return fmt.Errorf("staging dir: %w", err)
	}
	b.onCleanup("remove the staging dir", func(context.Context) error { return sd.Remove() })
	specs, err := outputSpecs(b.r)
	if err != nil {
		return err
	}
	reporter := b.opts.Progress
	if reporter == nil {
		reporter = progress.NewLog(b.log, 10*time.Second)
	}
	results := make([][]disk.Artifact, len(specs))
	g, gctx := errgroup.WithContext(ctx)
	for i, spec := range specs {
		g.Go(func() error {
			started := time.Now()
			tr := reporter.Start(spec.Files()[0], 0)
			err := b.waits.track(func() (err error) {
				results[i], err = disk.Produce(gctx, b.diskPath, spec, staging, func(done, total int64) {
					tr.SetTotal(total)
					tr.SetCurrent(done)
				})
				return err
			})
			tr.Done(err)
			if err != nil {
				return fmt.Errorf("%s: outputs[%d]: %w", b.r.Outputs[i].Pos, i, err)
			}
			for _, a := range results[i] {
				b.log.Info("output ready", "file", filepath.Base(a.Path), "size", a.Size, "sha256", a.SHA256, "took", time.Since(started).Round(time.Millisecond))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, arts := range results {
		for _, a := range arts {
			b.outputs = append(b.outputs, OutputFile{File: filepath.Base(a.Path), Format: a.Format, Size: a.Size, SHA256: a.SHA256})
		}
	}
	for _, rel := range b.downloads {
		dst := filepath.Join(staging, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(b.workDir, "downloads", rel), dst); err != nil {
			return fmt.Errorf("publish the download %s: %w", rel, err)
		}
		files, err := hashTree(ctx, staging, rel)
		if err != nil {
			return fmt.Errorf("hash the download %s: %w", rel, err)
		}
		b.downloaded = append(b.downloaded, files...)
	}
	return nil
}

// hashTree lists the regular files at rel under dir (rel itself, or the files of a tree), with
// their sizes and sha256, by slash-separated path relative to dir.
func hashTree(ctx context.Context, dir, rel string) ([]OutputFile, error) {
	var out []OutputFile
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
		out = append(out, OutputFile{File: filepath.ToSlash(name), Format: "download", Size: n, SHA256: sum})
		return nil
	})
	return out, err
}

// record writes manifest.json and SHA256SUMS, then publishes the staging dir as OutDir/NAME in
// one rename: the outputs appear together or not at all. A previous build's outputs are replaced.
func (b *build) record(ctx context.Context) error {
	m := &Manifest{
		Name: b.r.Name, BuildID: b.id, Started: b.started.UTC(), Finished: time.Now().UTC(),
		Tool: b.opts.Tool, Firmware: string(b.fwKind), Steps: b.timings, Provisioners: b.provTimings,
		Outputs: b.outputs, Downloads: b.downloaded, Packages: b.packages,
	}
	m.Recipe.File = b.r.File
	if data, err := os.ReadFile(b.r.File); err == nil {
		sum := sha256.Sum256(data)
		m.Recipe.SHA256 = hex.EncodeToString(sum[:])
	} else if data, ok := recipes.CatalogSource(strings.TrimPrefix(b.r.File, "catalog:")); ok {
		sum := sha256.Sum256(data)
		m.Recipe.SHA256 = hex.EncodeToString(sum[:])
	}
	if d := b.r.Source.Disk; d != nil {
		m.Inputs = append(m.Inputs, ManifestInput{Kind: "disk", URL: d.URL, SHA256: b.baseSum})
	}
	if i := b.r.Source.ISO; i != nil {
		m.Inputs = append(m.Inputs, ManifestInput{Kind: "iso", URL: i.URL, SHA256: b.baseSum})
	}
	if i := b.r.Source.Image; i != nil {
		m.Inputs = append(m.Inputs, ManifestInput{Kind: "image", URL: "image:" + i.Name, SHA256: b.baseLayer})
	}
	m.Image = b.image
	sort.Slice(m.Packages, func(i, j int) bool { return m.Packages[i].Name < m.Packages[j].Name })
	staging := b.stagingDir()
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(staging, "manifest.json"), append(data, '\n')); err != nil {
		return err
	}
	var sums strings.Builder
	for _, o := range slices.Concat(b.outputs, b.downloaded) {
		fmt.Fprintf(&sums, "%s  %s\n", o.SHA256, o.File)
	}
	if err := writeSynced(filepath.Join(staging, "SHA256SUMS"), []byte(sums.String())); err != nil {
		return err
	}
	b.manifest = m
	if err := publishDir(staging, b.outDir); err != nil {
		return err
	}
	return b.nameImage(ctx)
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
