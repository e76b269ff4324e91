package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/internal/progress"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show an image: format, sizes, partitions and filesystems, and its manifest if one is beside it",
		ArgsUsage: "IMAGE",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{errors.New("name one image file")}
			}
			path := c.Args().First()
			in, err := disk.Inspect(c.Context, path)
			if err != nil {
				return err
			}
			manifest := filepath.Join(filepath.Dir(path), "manifest.json")
			var m json.RawMessage
			if b, err := os.ReadFile(manifest); err == nil && json.Valid(b) {
				m = b
			}
			if c.Bool("json") {
				out := struct {
					disk.Inspection
					Manifest json.RawMessage `json:"manifest,omitempty"`
				}{in, m}
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if err := in.WriteText(c.App.Writer); err != nil {
				return err
			}
			if m != nil {
				var s struct {
					Name     string `json:"name"`
					BuildID  string `json:"build_id"`
					Finished string `json:"finished"`
					Packages []any  `json:"packages"`
				}
				_ = json.Unmarshal(m, &s)
				fmt.Fprintf(c.App.Writer, "\nmanifest %s: %s, build %s, finished %s, %d packages\n", manifest, s.Name, s.BuildID, s.Finished, len(s.Packages))
			}
			return nil
		},
	}
}

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:      "convert",
		Usage:     "convert an image to output formats, as a build's outputs are made (checked and hashed)",
		ArgsUsage: "IMAGE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Required: true, Usage: "`FORMATS`, comma-separated: qcow2, qcow2+zstd, qcow2+zlib, vmdk, vmdk+monolithicSparse, vhdx, raw, raw+zstd, raw+xz, raw+bmap, raw+minimal, ova (options join with +)"},
			&cli.StringFlag{Name: "out", Value: ".", Usage: "write into `DIR`"},
			&cli.StringFlag{Name: "name", Usage: "base `NAME` of the outputs (default: the input's name without extension)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{errors.New("name one image file")}
			}
			in := c.Args().First()
			name := c.String("name")
			if name == "" {
				name = strings.SplitN(filepath.Base(in), ".", 2)[0]
			}
			items := strings.Split(c.String("to"), ",")
			var specs []disk.OutputSpec
			for i, item := range items {
				items[i] = strings.TrimSpace(item)
				spec, err := parseTo(name, items[i])
				if err != nil {
					return usageError{err}
				}
				specs = append(specs, spec)
			}
			if err := clashes(items, specs); err != nil {
				return usageError{err}
			}
			out := c.String("out")
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			bars := progress.NewBars(c.App.ErrWriter)
			defer bars.Close()
			trs := make([]progress.Tracker, len(specs))
			for i, spec := range specs {
				trs[i] = bars.Start(spec.Files()[0], 0)
			}
			// ProduceAll, not one Produce per spec: it is all or nothing, so a failed output
			// leaves none of the others half-published beside it.
			arts, err := disk.ProduceAll(c.Context, in, specs, out, func(i int, done, total int64) {
				trs[i].SetTotal(total)
				trs[i].SetCurrent(done)
			})
			for _, tr := range trs {
				tr.Done(err)
			}
			if err != nil {
				return err
			}
			bars.Close()
			for _, a := range arts {
				fmt.Fprintf(c.App.Writer, "%s  %s  %s\n", a.SHA256, progress.Bytes(a.Size), a.Path)
			}
			return nil
		},
	}
}

// clashes refuses a set of --to items whose outputs cannot all be made into one directory
// (disk.Clashes: two that write the same file, as raw+zstd+bmap and raw+xz+bmap both write
// NAME.raw.bmap), before any work: run at once, two outputs would write the same file at the
// same time. Each clash names both items as the user wrote them.
func clashes(items []string, specs []disk.OutputSpec) error {
	var errs []error
	for _, cl := range disk.Clashes(specs) {
		errs = append(errs, fmt.Errorf("--to %s and %s: %w", items[cl.First], items[cl.Second], cl))
	}
	return errors.Join(errs...)
}

// parseTo reads one --to item: a format and its options joined with "+".
func parseTo(name, item string) (disk.OutputSpec, error) {
	parts := strings.Split(item, "+")
	spec := disk.OutputSpec{Name: name, Format: parts[0]}
	for _, opt := range parts[1:] {
		switch {
		case opt == "zstd" || opt == "zlib" || opt == "xz":
			spec.Compress = opt
		case opt == "bmap":
			spec.Bmap = true
		case opt == "minimal":
			spec.Shrink = "minimal"
		case opt == "streamOptimized" || opt == "monolithicSparse":
			spec.Subformat = opt
		default:
			return spec, fmt.Errorf("--to %s: unknown option %q", item, opt)
		}
	}
	if err := spec.Validate(); err != nil {
		return spec, fmt.Errorf("--to %s: %w", item, err)
	}
	return spec, nil
}
