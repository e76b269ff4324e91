package main

import (
	"fmt"
	"runtime"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/qemu"
	"github.com/ingot-build/ingot/internal/qemuimg"
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
			bin, err := qemu.FindBinary(ctx, "x86_64")
			if err != nil {
				fmt.Fprintf(w, "qemu-system-x86_64\tmissing: %v\n", err)
			} else {
				fmt.Fprintf(w, "qemu-system-x86_64\t%s (QEMU %s, %s)\n", bin.Path, bin.Version, bin.Package)
			}
			if img, err := qemuimg.Find(ctx); err != nil {
				fmt.Fprintf(w, "qemu-img\tmissing: %v\n", err)
			} else {
				fmt.Fprintf(w, "qemu-img\t%s (%s)\n", img.Path, img.Version)
			}
			if err == nil {
				acc := qemu.ChooseAccel(ctx, bin.Path, hypervisor.AccelAuto)
				fmt.Fprintf(w, "accelerator\t%s (cpu %s): %s\n", acc.Name, acc.CPU, acc.Reason)
			}
			return w.Flush()
		},
	}
}
