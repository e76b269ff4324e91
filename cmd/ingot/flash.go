package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/flash"
	"github.com/ingot-build/ingot/internal/progress"
)

// flashCommand is `ingot flash IMAGE DEVICE`: a build's raw output (NAME.raw, .raw.zst or
// .raw.xz, with its bmap when there is one) written onto a block device or into an image file
// (package flash). Exit 0 when written (and read back with --verify); 1 when refused (a target in
// use or too small, a --bmap that is not there, no confirmation) or when the flash fails; 2 for bad
// usage or an image that cannot be read.
func flashCommand() *cli.Command {
	return &cli.Command{
		Name:  "flash",
		Usage: "write a raw image (.raw, .raw.zst, .raw.xz) onto a block device or into an image file; with a bmap, only its data",
		Description: "IMAGE is a raw output of a build; zstd and xz are decompressed on the fly. With a bmap (--bmap, or\n" +
			"NAME.raw.bmap or IMAGE.bmap beside it) only the mapped blocks are written, each range checked against\n" +
			"the bmap's sha256 as it is written. DEVICE is a block device, or a regular file (created, or\n" +
			"truncated to the image's size, sparse). A device that is mounted, holds a mounted partition, swap\n" +
			"or the host's root, or is smaller than the image is refused, and nothing is written. Without\n" +
			"--yes, ingot names the device (model, size, partitions) and asks before writing.\n" +
			"Exit codes: 0 written, 1 refused or failed, 2 bad usage. See docs/flash.md.",
		ArgsUsage: "IMAGE DEVICE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bmap", Usage: "use the bmap `FILE` (default: NAME.raw.bmap or IMAGE.bmap beside the image, if there)"},
			&cli.BoolFlag{Name: "no-bmap", Usage: "write the whole image, even with a bmap beside it"},
			&cli.BoolFlag{Name: "verify", Usage: "read what was written back from the device and check it"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask before overwriting DEVICE"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usageError{errors.New("name an image and a device: ingot flash IMAGE DEVICE")}
			}
			image, target := c.Args().Get(0), c.Args().Get(1)
			if c.IsSet("bmap") && c.Bool("no-bmap") {
				return usageError{errors.New("--bmap and --no-bmap contradict each other")}
			}
			if _, err := os.Stat(image); err != nil {
				return usageError{fmt.Errorf("the image: %w", err)}
			}
			log, err := newLogger(c.App.ErrWriter, "text", false)
			if err != nil {
				return err
			}
			plan, err := flash.Prepare(c.Context, image, target, flash.Options{
				Bmap: c.String("bmap"), NoBmap: c.Bool("no-bmap"), Verify: c.Bool("verify"), Log: log,
			})
			if err != nil {
				return fmt.Errorf("flash %s onto %s: %w", image, target, err)
			}
			if !c.Bool("yes") && needsConfirmation(plan.Target) {
				if err := confirm(c.App.Reader, c.App.ErrWriter, plan); err != nil {
					return err
				}
			}
			o, err := newOutput(c.App.ErrWriter, "text", false, os.Getenv)
			if err != nil {
				return err
			}
			defer o.Close()
			res, err := plan.Write(c.Context, o.Progress)
			o.Close()
			if err != nil {
				return fmt.Errorf("flash %s onto %s: %w", image, target, err)
			}
			writeFlashed(c.App.Writer, plan, res)
			return nil
		},
	}
}

// needsConfirmation: overwriting a device, or a file that has something in it, is asked about;
// writing a new image file is not.
func needsConfirmation(t *flash.Target) bool { return t.Block || t.Size > 0 }

// confirm names the target and asks the user on the terminal to type "yes". Without a terminal on
// stdin there is nobody to ask, and a script that means it passes --yes.
func confirm(in io.Reader, out io.Writer, plan *flash.Plan) error {
	f, ok := in.(*os.File)
	if !ok || !progress.IsTerminal(f) {
		return fmt.Errorf("%w: %s would be overwritten, and stdin is not a terminal to confirm it on; pass --yes to flash without asking",
			flash.ErrRefused, plan.Target.Path)
	}
	what := "size unknown until decompressed"
	if plan.Image.Size >= 0 {
		what = progress.Bytes(plan.Image.Size)
	}
	if plan.Image.Bmap != nil {
		what += fmt.Sprintf(", of which %s data by %s", progress.Bytes(plan.ToWrite()), plan.Image.BmapPath)
	}
	fmt.Fprintf(out, "About to write %s (%s) onto\n  %s\nEverything on it will be lost. Type yes to go on: ",
		plan.Image.Path, what, plan.Target.Describe())
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the answer: %w", err)
	}
	if strings.TrimSpace(line) != "yes" {
		return fmt.Errorf("%w: not confirmed; nothing was written to %s", flash.ErrRefused, plan.Target.Path)
	}
	return nil
}

// writeFlashed reports what was written, how fast, and the time the bmap or the skipped zeros
// saved against writing the whole image at the same rate.
func writeFlashed(w io.Writer, plan *flash.Plan, res *flash.Result) {
	fmt.Fprintf(w, "%s: flashed %s\n", plan.Target.Path, plan.Image.Path)
	how := "the whole image"
	switch {
	case plan.Image.Bmap != nil:
		how = "the data its bmap maps, " + plan.Image.BmapPath
	case !plan.Target.Block:
		how = "all but its zero blocks, left as holes"
	}
	fmt.Fprintf(w, "  wrote       %s of %s: %s\n", progress.Bytes(res.Written), progress.Bytes(res.ImageSize), how)
	fmt.Fprintf(w, "  throughput  %s in %s, synced\n", progress.Rate(res.Written, res.Elapsed), res.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  saved       %s against a full copy of %s at that rate\n", res.Saved().Round(time.Millisecond), progress.Bytes(res.ImageSize))
	if res.Verified {
		fmt.Fprintf(w, "  verified    %s read back, every range as written\n", progress.Bytes(res.Written))
	}
	for _, warn := range res.Warnings {
		fmt.Fprintf(w, "  warning     %s\n", warn)
	}
}
