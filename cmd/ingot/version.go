package main

import (
	"fmt"
	"runtime"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/qemu"
	"github.com/ingot-build/ingot/internal/qemuimg"
	"github.com/ingot-build/ingot/recipes"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print ingot's version, the QEMU tools it would use, and the accelerator a build would get",
		Action: func(c *cli.Context) error {
			ctx := c.Context
			w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "ingot\t%s (commit %s, %s %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			// A missing tool is reported on its line, not as a failure: `version` is what
			// a user runs to find out what is missing.
			type found struct {
				arch string
				bin  qemu.Binary
			}
			var bins []found
			for _, arch := range []string{recipes.ArchX86_64, recipes.ArchAArch64} {
				bin, err := qemu.FindBinary(ctx, arch)
				if err != nil {
					fmt.Fprintf(w, "qemu-system-%s\tmissing: %v\n", arch, err)
					continue
				}
				fmt.Fprintf(w, "qemu-system-%s\t%s (QEMU %s, %s)\n", arch, bin.Path, bin.Version, bin.Package)
				bins = append(bins, found{arch, bin})
			}
			if img, err := qemuimg.Find(ctx); err != nil {
				fmt.Fprintf(w, "qemu-img\tmissing: %v\n", err)
			} else {
				fmt.Fprintf(w, "qemu-img\t%s (%s)\n", img.Path, img.Version)
			}
			for _, b := range bins {
				acc := qemu.ChooseAccel(ctx, b.bin.Path, b.arch, hypervisor.AccelAuto)
				fmt.Fprintf(w, "accelerator %s\t%s (cpu %s): %s\n", b.arch, acc.Name, acc.CPU, acc.Reason)
			}
			return w.Flush()
		},
	}
}
