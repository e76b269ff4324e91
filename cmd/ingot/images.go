package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/source"
)

var storeFlag = &cli.StringFlag{Name: "store", Usage: "the image store `DIR` (default ~/.cache/ingot/images)", EnvVars: []string{"INGOT_IMAGE_STORE"}}

// openStore opens the image store named by --store, or the default one.
func openStore(c *cli.Context) (*images.Store, error) {
	dir := c.String("store")
	if dir == "" {
		cache, err := source.DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		dir = filepath.Join(cache, "images")
	}
	return images.Open(dir)
}

func imagesCommand() *cli.Command {
	return &cli.Command{
		Name:  "images",
		Usage: "the local image store: built disks that recipes can start from (source: { image: NAME })",
		Subcommands: []*cli.Command{
			{
				Name:  "ls",
				Usage: "list stored images with their layers",
				Flags: []cli.Flag{storeFlag},
				Action: func(c *cli.Context) error {
					s, err := openStore(c)
					if err != nil {
						return err
					}
					list, err := s.List()
					if err != nil {
						return err
					}
					w := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
					fmt.Fprintln(w, "NAME\tLAYER\tLAYERS\tOWN SIZE\tCHAIN SIZE\tCREATED\tRECIPE")
					for _, e := range list {
						var chain int64
						for _, l := range e.Chain {
							chain += l.Size
						}
						fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.Name, e.Layer[:12], len(e.Chain),
							progress.Bytes(e.Chain[0].Size), progress.Bytes(chain), e.Created.Local().Format(time.DateTime), e.Recipe)
					}
					return w.Flush()
				},
			},
			{
				Name:      "rm",
				Usage:     "remove images by name, and the layers nothing else needs",
				ArgsUsage: "NAME…",
				Flags:     []cli.Flag{storeFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return usageError{errors.New("name at least one image (see 'ingot images ls')")}
					}
					s, err := openStore(c)
					if err != nil {
						return err
					}
					freed, err := s.Remove(c.Context, c.Args().Slice()...)
					if errors.Is(err, images.ErrNotFound) {
						return usageError{err}
					}
					if err != nil {
						return err
					}
					for _, name := range c.Args().Slice() {
						fmt.Fprintf(c.App.Writer, "removed %s\n", name)
					}
					fmt.Fprintf(c.App.Writer, "freed %d layer(s)\n", len(freed))
					return nil
				},
			},
		},
	}
}
