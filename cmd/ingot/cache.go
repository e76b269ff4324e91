package main

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/bake"
)

// defaultOutDir is where `ingot build` publishes when given no --out, and so where `ingot cache
// prune` looks for the staging dirs of builds that died while publishing.
const defaultOutDir = "out"

// workDirFlag is --work-dir, shared by build and cache prune so that both name the same
// directory the same way.
func workDirFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "work-dir", Usage: "where private work dirs go (default ~/.cache/ingot/work)"}
}

// workRoot is --work-dir, or bake's default: prune must sweep exactly where builds leave their
// work dirs.
func workRoot(c *cli.Context) (string, error) {
	if dir := c.String("work-dir"); dir != "" {
		return dir, nil
	}
	return bake.DefaultWorkRoot()
}

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "ingot's caches: what builds leave behind",
		Subcommands: []*cli.Command{
			{
				Name: "prune",
				Usage: "remove what builds that are gone left behind (work dirs, staging dirs in the output dir) " +
					"and the image store's layers no name or running build needs",
				Flags: []cli.Flag{
					workDirFlag(),
					&cli.StringFlag{Name: "out", Value: defaultOutDir, Usage: "the output `DIR` builds publish into, where their staging dirs are"},
					storeFlag,
					&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging"},
				},
				Action: cachePrune,
			},
		},
	}
}

// cachePrune sweeps the work root and the output dir, then collects the image store. A build
// killed with SIGKILL (or by the OOM killer, or a reboot) cannot clean up after itself; builds
// sweep too, but only when one runs, and a user short of disk wants the space back now. Live
// builds are safe: their dirs and held layers are flock'd, and bake and images skip what is
// locked. What was removed is printed even when something else fails, since it is gone either way.
func cachePrune(c *cli.Context) error {
	level := slog.LevelWarn // bake logs each removed dir at info; this command prints them itself
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	log := slog.New(&lineHandler{w: c.App.ErrWriter, level: level, mu: new(sync.Mutex)})
	root, err := workRoot(c)
	if err != nil {
		return err
	}
	store, err := openStore(c)
	if err != nil {
		return err
	}
	w := c.App.Writer
	dirs, sweepErr := bake.Sweep(c.Context, log, root, c.String("out"))
	for _, d := range dirs {
		fmt.Fprintf(w, "removed %s\n", d)
	}
	if sweepErr != nil {
		sweepErr = fmt.Errorf("cache prune: %w", sweepErr)
	}
	var layers []string
	var storeErr error
	if c.Context.Err() == nil {
		layers, storeErr = store.Remove(c.Context)
		if storeErr != nil {
			storeErr = fmt.Errorf("cache prune: image store %s: %w", store.Dir(), storeErr)
		}
	}
	for _, d := range layers {
		fmt.Fprintf(w, "freed layer %s\n", shortDigest(d))
	}
	if err := errors.Join(sweepErr, storeErr); err != nil {
		return err
	}
	if len(dirs) == 0 && len(layers) == 0 {
		fmt.Fprintln(w, "nothing to prune: no dirs of builds that are gone, no layers that nothing needs")
		return nil
	}
	fmt.Fprintf(w, "pruned %d dir(s) and %d layer(s)\n", len(dirs), len(layers))
	return nil
}

// shortDigest is the first 12 hex digits of a layer digest, as `ingot images ls` shows them.
func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
