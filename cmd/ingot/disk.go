package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/internal/formats"
	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/manifest"
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
			// A manifest.json that is there but cannot be read is said so, and the image is
			// still shown: it may be another tool's file, or a newer ingot's.
			mpath := filepath.Join(filepath.Dir(path), "manifest.json")
			m, merr := manifest.Read(mpath)
			if errors.Is(merr, fs.ErrNotExist) {
				merr = nil
			} else if merr != nil {
				fmt.Fprintf(c.App.ErrWriter, "ingot: warning: %v; showing the image without it\n", merr)
			}
			if c.Bool("json") {
				out := struct {
					disk.Inspection
					Manifest      *manifest.Manifest `json:"manifest,omitempty"`
					ManifestError string             `json:"manifest_error,omitempty"`
				}{Inspection: in, Manifest: m}
				if merr != nil {
					out.ManifestError = merr.Error()
				}
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if err := in.WriteText(c.App.Writer); err != nil {
				return err
			}
			if m != nil {
				fmt.Fprintf(c.App.Writer, "\nmanifest %s: %s, build %s, finished %s, %d packages\n",
					mpath, m.Name, m.BuildID, m.Finished.Format(time.RFC3339), len(m.Packages))
				for _, o := range m.Outputs {
					if o.File == filepath.Base(path) && len(o.Tests) > 0 {
						fmt.Fprintf(c.App.Writer, "\ntest boots of %s:\n", o.File)
						writeTestBoots(c.App.Writer, o.Tests)
					}
				}
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
			&cli.StringFlag{Name: "to", Required: true, Usage: "`FORMATS`, comma-separated: " + strings.Join(toExamples(), ", ") + " (options join with +)"},
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
			o, err := newOutput(c.App.ErrWriter, "text", false, os.Getenv)
			if err != nil {
				return err
			}
			defer o.Close()
			// ProduceAll, not one Produce per spec: it is all or nothing, so a failed output
			// leaves none of the others half-published beside it. The input is a file the
			// user named, so qemu-img probes its format.
			arts, err := disk.ProduceAll(c.Context, in, "", specs, out, o.Progress)
			if err != nil {
				return err
			}
			o.Close()
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

// parseTo reads one --to item: a format and its options joined with "+", each option written as
// its value (zstd, monolithicSparse, minimal), or as its name for bmap, a boolean.
func parseTo(name, item string) (disk.OutputSpec, error) {
	parts := strings.Split(item, "+")
	spec := disk.OutputSpec{Name: name, Format: parts[0]}
	for _, opt := range parts[1:] {
		switch toOption(opt) {
		case "compress":
			spec.Compress = opt
		case "subformat":
			spec.Subformat = opt
		case "shrink":
			spec.Shrink = opt
		case "bmap":
			spec.Bmap = true
		default:
			return spec, fmt.Errorf("--to %s: unknown option %q", item, opt)
		}
	}
	if err := spec.Validate(); err != nil {
		return spec, fmt.Errorf("--to %s: %w", item, err)
	}
	return spec, nil
}

// toOption names the option that opt, written in a --to item, sets: the option of any format
// whose values include it (Validate then says whether the item's format takes it), or the
// boolean option called opt. It is "" for what no format takes.
func toOption(opt string) string {
	for _, f := range formats.All() {
		for _, o := range f.Options {
			if slices.Contains(o.Values, opt) || (o.Values == nil && o.Key == opt) {
				return o.Key
			}
		}
	}
	return ""
}

// toExamples lists the --to items for --help: each format alone, then with each option value
// that is not its default.
func toExamples() []string {
	var out []string
	for _, f := range formats.All() {
		out = append(out, f.Name)
		for _, o := range f.Options {
			if o.Values == nil {
				out = append(out, f.Name+"+"+o.Key)
				continue
			}
			for _, v := range o.Values[1:] {
				out = append(out, f.Name+"+"+v)
			}
		}
	}
	return out
}
