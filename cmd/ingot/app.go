package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "ingot",
		Usage:     "bake golden VM images from pinned sources with QEMU",
		Version:   fmt.Sprintf("%s (commit %s)", version, commit),
		Writer:    stdout,
		ErrWriter: stderr,
		// cli v2 would call os.Exit itself on some errors; main maps errors to exit codes instead.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		HideVersion: true,
		Commands: []*cli.Command{
			buildCommand(),
			validateCommand(),
			recipesCommand(),
			imagesCommand(),
			inspectCommand(),
			convertCommand(),
			versionCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageError{fmt.Errorf("no command %q; see 'ingot --help'", c.Args().First())}
			}
			return cli.ShowAppHelp(c)
		},
	}
}
