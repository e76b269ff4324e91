package bake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/recipes"
)

// OutputFile is one published artifact.
type OutputFile struct {
	File   string `json:"file"`
	Format string `json:"format"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// StepTiming is how long a step took.
type StepTiming struct {
	Step    string  `json:"step"`
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
	Outputs  []OutputFile    `json:"outputs"`
	Packages []Package       `json:"packages"`
	// Image is where the built disk was kept in the image store.
	Image *ManifestImage `json:"image,omitempty"`
}

// ManifestInput is a pinned input.
type ManifestInput struct {
	Kind   string `json:"kind"`
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
}

// supportedOutput says whether this build can make an output now; the others come with the disk
// outputs work (compressed raw, bmap, OVA, minimal shrink).
func supportedOutput(o recipes.Output) error {
	switch {
	case o.Format == "qcow2", o.Format == "vmdk", o.Format == "vhdx":
		return nil
	case o.Format == "raw" && (o.Compress == "" || o.Compress == "none") && !o.Bmap && (o.Shrink == "" || o.Shrink == "none"):
		return nil
	}
	return fmt.Errorf("%s: output %+v is not supported by this version of ingot yet (qcow2, vmdk, vhdx and plain raw are)", o.Pos, o)
}

func (b *build) stagingDir() string {
	return filepath.Join(b.opts.OutDir, ".ingot-staging-"+b.id)
}

// convert writes every output into a staging dir beside the output dir, checks and hashes it.
func (b *build) convert(ctx context.Context) error {
	staging := b.stagingDir()
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return fmt.Errorf("staging dir: %w", err)
	}
	b.onCleanup("remove the staging dir", func(context.Context) error { return os.RemoveAll(staging) })
	for _, o := range b.r.Outputs {
		name := b.r.Name + "." + o.Format
		path := filepath.Join(staging, name)
		co := disk.ConvertOptions{Format: o.Format}
		switch o.Format {
		case "qcow2":
			switch o.Compress {
			case "zlib":
				co.Compress = true
			case "zstd":
				co.Compress = true
				co.Options = []string{"compression_type=zstd"}
			}
		case "vmdk":
			if o.Subformat != "" {
				co.Options = []string{"subformat=" + o.Subformat}
			}
		}
		started := time.Now()
		if err := b.waits.track(func() error { return disk.Convert(ctx, b.diskPath, path, co) }); err != nil {
			return err
		}
		if o.Format != "raw" {
			if err := b.waits.track(func() error { return disk.Check(ctx, path, o.Format) }); err != nil {
				return err
			}
		}
		f, err := hashFile(path)
		if err != nil {
			return err
		}
		if f.Size == 0 {
			return fmt.Errorf("%s: the %s output is empty", o.Pos, o.Format)
		}
		f.File, f.Format = name, o.Format
		b.outputs = append(b.outputs, f)
		b.log.Info("output ready", "file", name, "size", f.Size, "sha256", f.SHA256, "took", time.Since(started).Round(time.Millisecond))
	}
	for _, rel := range b.downloads {
		dst := filepath.Join(staging, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(b.workDir, "downloads", rel), dst); err != nil {
			return fmt.Errorf("publish the download %s: %w", rel, err)
		}
	}
	return nil
}

func hashFile(path string) (OutputFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return OutputFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return OutputFile{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return OutputFile{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// record writes manifest.json and SHA256SUMS, then publishes the staging dir as OutDir/NAME in
// one rename: the outputs appear together or not at all. A previous build's outputs are replaced.
func (b *build) record(ctx context.Context) error {
	m := &Manifest{
		Name: b.r.Name, BuildID: b.id, Started: b.started.UTC(), Finished: time.Now().UTC(),
		Tool: b.opts.Tool, Firmware: string(b.fwKind), Steps: b.timings, Outputs: b.outputs, Packages: b.packages,
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
	for _, o := range b.outputs {
		fmt.Fprintf(&sums, "%s  %s\n", o.SHA256, o.File)
	}
	if err := writeSynced(filepath.Join(staging, "SHA256SUMS"), []byte(sums.String())); err != nil {
		return err
	}
	b.manifest = m
	return publishDir(staging, b.outDir)
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
