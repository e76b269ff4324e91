package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
)

func testCommand() *cli.Command {
	return &cli.Command{
		Name:  "test",
		Usage: "boot an image as a user gets it, with a fresh seed, and run the test checks on it",
		Description: "Runs the checks of a build's test step (boots, cloud-init, fresh-identity, no-build-user, grown)\n" +
			"and the checks of --tests FILE on any image: qcow2, vmdk, vhdx, raw, raw.zst, raw.xz or OVA; or on\n" +
			"a block device a raw image was flashed onto (ingot flash), whose root filesystem must have grown to\n" +
			"fill it (grown). The image or device is never written: it boots under a qcow2 overlay.\n" +
			"With a manifest.json beside the image that lists it, the image is checked against the build\n" +
			"machine it records. Exits 0 when every check passes, 1 when one fails, 2 for bad input.",
		ArgsUsage: "IMAGE",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "firmware", Usage: "boot under `FIRMWARE` (bios, uefi, uefi-secure; repeatable; default: the build's, else bios)"},
			&cli.StringFlag{Name: "arch", Usage: "boot as an `ARCH` machine: x86_64 or aarch64 (default: the build's, from its manifest, else the one its UEFI boot loader is for, else the host's)"},
			&cli.StringFlag{Name: "tests", Usage: "run the checks of `FILE` too (a YAML file with a tests: list, as in a recipe)"},
			&cli.IntFlag{Name: "cpus", Value: 2, Usage: "the test machine's vCPUs"},
			&cli.StringFlag{Name: "memory", Value: "1GiB", Usage: "the test machine's memory"},
			&cli.StringFlag{Name: "disk-size", Usage: "boot on a disk of `SIZE` (default: the build's disk when the manifest says, else the image's size); a bigger disk adds the grown check"},
			&cli.StringFlag{Name: "accel", Usage: "kvm, tcg or auto (default)"},
			&cli.BoolFlag{Name: "keep-on-failure", Usage: "keep a failing boot's disk and seed and say how to boot it by hand"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json (one event a line)"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging"},
			workDirFlag(),
		}, driverFlags...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{errors.New("name one image file")}
			}
			image := c.Args().First()
			st, err := os.Stat(image)
			block := err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0
			if err != nil || !st.Mode().IsRegular() && !block {
				if err == nil {
					err = errors.New("not a regular file or a block device")
				}
				return usageError{fmt.Errorf("image %s: %w", image, err)}
			}
			if _, err := disk.FormatOf(c.Context, image); err != nil {
				return usageError{err}
			}
			opts := bake.TestOptions{Image: image, CPUs: c.Int("cpus"), KeepOnFailure: c.Bool("keep-on-failure")}
			switch a := c.String("arch"); a {
			case "", recipes.ArchX86_64, recipes.ArchAArch64:
				opts.Arch = a
			default:
				return usageError{fmt.Errorf("--arch %q: want x86_64 or aarch64 (QEMU's names; Debian's arm64 is aarch64)", a)}
			}
			for _, f := range c.StringSlice("firmware") {
				for _, name := range strings.Split(f, ",") {
					k, err := firmware.ParseKind(strings.TrimSpace(name))
					if err != nil {
						return usageError{fmt.Errorf("--firmware %w", err)}
					}
					opts.Firmware = append(opts.Firmware, k)
				}
			}
			mem, err := recipes.ParseSize(c.String("memory"))
			if err != nil || mem < 128<<20 {
				return usageError{fmt.Errorf("--memory %q: want a size of at least 128MiB, such as 1GiB", c.String("memory"))}
			}
			opts.MemoryMiB = int(mem >> 20)
			if s := c.String("disk-size"); s != "" {
				if opts.DiskBytes, err = recipes.ParseSize(s); err != nil {
					return usageError{fmt.Errorf("--disk-size %w", err)}
				}
			}
			if c.IsSet("accel") {
				if opts.Accel, err = hypervisor.ParseAccel(c.String("accel")); err != nil {
					return usageError{fmt.Errorf("--accel %w", err)}
				}
			}
			if p := c.String("tests"); p != "" {
				if opts.Checks, err = recipes.LoadChecks(p); err != nil {
					return usageError{err}
				}
			}
			out, err := newOutput(c.App.ErrWriter, c.String("log-format"), c.Bool("verbose"), os.Getenv)
			if err != nil {
				return err
			}
			defer out.Close()
			opts.Logger = out.Log
			if opts.WorkRoot, err = workRoot(c); err != nil {
				return err
			}
			ds, err := openDrivers(c, out.Log, []*recipes.Recipe{{Machine: recipes.Machine{Arch: opts.Arch}}}, manifest.Tool{})
			if err != nil {
				return err
			}
			defer ds.Close()
			opts.Driver = ds.byName[driverFor(c, &recipes.Recipe{})]
			if opts.Driver == nil {
				return usageError{fmt.Errorf("--driver %s: not available", c.String("driver"))}
			}
			boots, err := bake.TestImage(c.Context, opts)
			out.Close()
			writeTestBoots(c.App.Writer, boots)
			if err != nil {
				fmt.Fprintf(c.App.ErrWriter, "ingot: %v\n", err)
				return errReported
			}
			return nil
		},
	}
}

// writeTestBoots prints test boots check by check: one line a check, its output indented under
// a check that failed.
func writeTestBoots(w io.Writer, boots []manifest.TestBoot) {
	for _, b := range boots {
		if b.Boot == "" {
			continue
		}
		verdict := "passed"
		if !b.Passed {
			verdict = "FAILED"
		}
		fmt.Fprintf(w, "%s boot under %s: %s in %.1f s\n", b.Boot, b.Firmware, verdict, b.Seconds)
		for _, c := range b.Checks {
			fmt.Fprintf(w, "  %-4s  %-16s %6.1f s", c.Result, c.Name, c.Seconds)
			first, rest, _ := strings.Cut(c.Output, "\n")
			if c.Result == manifest.CheckFail && rest != "" {
				fmt.Fprintf(w, "  %s\n        %s\n", first, strings.ReplaceAll(rest, "\n", "\n        "))
				continue
			}
			fmt.Fprintf(w, "  %s\n", first)
		}
	}
}
