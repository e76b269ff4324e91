package main

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/recipes"
	"github.com/ingot-build/ingot/source"
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
		Usage: "ingot's caches: the sources builds fetched, the checkpoints they took, and what builds leave behind",
		Subcommands: []*cli.Command{
			{
				Name: "ls",
				Usage: "list the source cache: the inputs builds fetched (cloud images, ISOs, local files), " +
					"with their sha256, size, when a build last used them and where they came from; then the checkpoints " +
					"in the image store, with their recipe, the step they were taken after, size and age",
				Flags:  []cli.Flag{storeFlag},
				Action: cacheLs,
			},
			{
				Name: "prune",
				Usage: "remove what builds that are gone left behind (work dirs, staging dirs in the output dir) " +
					"and the image store's layers no name or running build needs; with --sources, also cached sources " +
					"no build used for --older-than; with --checkpoints, also checkpoints by --older-than, --keep-last and --max-size",
				Flags: []cli.Flag{
					workDirFlag(),
					&cli.StringFlag{Name: "out", Value: defaultOutDir, Usage: "the output `DIR` builds publish into, where their staging dirs are"},
					storeFlag,
					&cli.BoolFlag{Name: "sources", Usage: "also remove cached sources, and partial downloads, that no build used for --older-than"},
					&cli.StringFlag{Name: "older-than", Value: "30d", Usage: "with --sources or --checkpoints: how long a source or checkpoint must have gone unused, as an `AGE` " +
						"like 30d, 12h or 90m; 0 removes every source no build is fetching, so use it only when no build is running"},
					&cli.BoolFlag{Name: "checkpoints", Usage: "also remove checkpoints: those unused for --older-than, beyond --keep-last per recipe, and the least recently used beyond --max-size"},
					&cli.IntFlag{Name: "keep-last", Usage: "with --checkpoints: keep the `N` most recently used checkpoints of each recipe (0: no such rule)"},
					&cli.StringFlag{Name: "max-size", Usage: "with --checkpoints: remove the least recently used until the rest fit in `SIZE` (like 20GiB)"},
					&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging"},
				},
				Action: cachePrune,
			},
		},
	}
}

// openSources opens the source cache that `ingot build` fetches into, under ingot's cache
// directory ($XDG_CACHE_HOME/ingot, else ~/.cache/ingot).
func openSources(log *slog.Logger, opts ...source.Option) (*source.Fetcher, error) {
	dir, err := source.DefaultCacheDir()
	if err != nil {
		return nil, err
	}
	return source.New(dir, append([]source.Option{source.WithLogger(log)}, opts...)...)
}

// cacheLs prints the source cache, most recently used first: what `cache prune --sources` would
// weigh, with the dates --older-than is compared with.
func cacheLs(c *cli.Context) error {
	f, err := openSources(slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	entries, err := f.List()
	if err != nil {
		return err
	}
	w := c.App.Writer
	if len(entries) == 0 {
		fmt.Fprintf(w, "no cached sources in %s\n", f.Dir())
		return checkpointsLs(c)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHA256\tSIZE\tLAST USED\tSTATE\tURL")
	var total int64
	for _, e := range entries {
		state := "verified"
		if e.Partial {
			state = "partial"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", sourceDigest(e), progress.Bytes(e.Size),
			e.LastUsed.Local().Format(time.DateTime), state, cmp.Or(e.URL, "-"))
		total += e.Size
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d source(s), %s, in %s\n", len(entries), progress.Bytes(total), f.Dir())
	return checkpointsLs(c)
}

// checkpointsLs prints the image store's checkpoints, most recently used first: what `cache
// prune --checkpoints` weighs.
func checkpointsLs(c *cli.Context) error {
	store, err := openStore(c)
	if err != nil {
		return err
	}
	cps, err := store.Checkpoints()
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintln(w)
	if len(cps) == 0 {
		fmt.Fprintf(w, "no checkpoints in %s\n", store.Dir())
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECKPOINT\tRECIPE\tAFTER\tSIZE\tCREATED\tLAST USED")
	var total int64
	for _, cp := range cps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", shortDigest(cp.Key), cp.Recipe, cp.Step, progress.Bytes(cp.Size),
			cp.Created.Local().Format(time.DateTime), cp.Used.Local().Format(time.DateTime))
		total += cp.Size
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d checkpoint(s), %s, in %s (builds keep them under %s, least recently used out first)\n",
		len(cps), progress.Bytes(total), store.Dir(), progress.Bytes(images.DefaultCheckpointCap))
	return nil
}

// sourceDigest names a cached source by the first 12 hex digits of its sha256, as `ingot images
// ls` names layers; a partial download pinned by sha512 has no sha256 yet, so by that.
func sourceDigest(e source.Entry) string {
	if e.SHA256 == "" {
		return "sha512:" + shortDigest(e.SHA512)
	}
	return shortDigest(e.SHA256)
}

// cachePrune sweeps the work root and the output dir, then collects the image store, and with
// --sources the source cache. A build killed with SIGKILL (or by the OOM killer, or a reboot)
// cannot clean up after itself; builds sweep too, but only when one runs, and a user short of
// disk wants the space back now. Live builds are safe: their dirs, held layers and the sources
// they are fetching are flock'd, and bake, images and source skip what is locked; a source a build
// fetched earlier is protected by its age only, which is why --older-than defaults to days. Sources
// are pruned only when asked: unlike leftovers they are worth keeping, since the next build would
// download them again. What was removed is printed even when something else fails, since it is
// gone either way.
func cachePrune(c *cli.Context) error {
	pruneSources, pruneCheckpoints := c.Bool("sources"), c.Bool("checkpoints")
	if c.IsSet("older-than") && !pruneSources && !pruneCheckpoints {
		return usageError{errors.New("--older-than is for cached sources and checkpoints: add --sources or --checkpoints")}
	}
	for _, f := range []string{"keep-last", "max-size"} {
		if c.IsSet(f) && !pruneCheckpoints {
			return usageError{fmt.Errorf("--%s is for checkpoints: add --checkpoints", f)}
		}
	}
	var olderThan time.Duration
	if pruneSources || pruneCheckpoints {
		var err error
		if olderThan, err = parseAge(c.String("older-than")); err != nil {
			return usageError{fmt.Errorf("--older-than %w", err)}
		}
	}
	rule := images.PruneCheckpoints{OlderThan: olderThan, KeepLast: c.Int("keep-last")}
	if rule.KeepLast < 0 {
		return usageError{fmt.Errorf("--keep-last %d: want 0 or more", rule.KeepLast)}
	}
	if c.IsSet("max-size") {
		n, err := recipes.ParseSize(c.String("max-size"))
		if err != nil {
			return usageError{fmt.Errorf("--max-size %w", err)}
		}
		rule.MaxSize = n
	}
	switch {
	case pruneCheckpoints && !c.IsSet("older-than") && (rule.KeepLast > 0 || rule.MaxSize > 0):
		rule.OlderThan = 0 // --keep-last or --max-size alone: only that rule
	case pruneCheckpoints && c.IsSet("older-than") && olderThan == 0:
		rule.All = true // to the store, an age of 0 is no age rule
	}
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
	var sources *source.Fetcher
	if pruneSources {
		if sources, err = openSources(log); err != nil {
			return err
		}
	}
	w := c.App.Writer
	dirs, sweepErr := bake.Sweep(c.Context, log, root, c.String("out"))
	for _, d := range dirs {
		fmt.Fprintf(w, "removed %s\n", d)
	}
	if sweepErr != nil {
		sweepErr = fmt.Errorf("cache prune: %w", sweepErr)
	}
	var checkpoints []images.Checkpoint
	var checkpointsErr error
	if pruneCheckpoints && c.Context.Err() == nil {
		checkpoints, checkpointsErr = store.PruneCheckpoints(c.Context, rule)
		if checkpointsErr != nil {
			checkpointsErr = fmt.Errorf("cache prune: checkpoints in %s: %w", store.Dir(), checkpointsErr)
		}
	}
	var cpFreed int64
	for _, cp := range checkpoints {
		fmt.Fprintf(w, "removed checkpoint %s (%s, after %s, %s, last used %s)\n", shortDigest(cp.Key), cp.Recipe, cp.Step,
			progress.Bytes(cp.Size), cp.Used.Local().Format(time.DateTime))
		cpFreed += cp.Size
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
	var removed []source.Entry
	var sourcesErr error
	if sources != nil && c.Context.Err() == nil {
		removed, sourcesErr = sources.Prune(olderThan)
		if sourcesErr != nil {
			sourcesErr = fmt.Errorf("cache prune: source cache %s: %w", sources.Dir(), sourcesErr)
		}
	}
	var freed int64
	for _, e := range removed {
		what := "source"
		if e.Partial {
			what = "partial download"
		}
		fmt.Fprintf(w, "removed %s %s (%s, last used %s) %s\n", what, sourceDigest(e), progress.Bytes(e.Size),
			e.LastUsed.Local().Format(time.DateTime), cmp.Or(e.URL, "from an unknown URL"))
		freed += e.Size
	}
	if err := errors.Join(sweepErr, checkpointsErr, storeErr, sourcesErr); err != nil {
		return err
	}
	if pruneCheckpoints {
		fmt.Fprintf(w, "pruned %d checkpoint(s) of %s\n", len(checkpoints), progress.Bytes(cpFreed))
	}
	switch {
	case !pruneSources && len(dirs) == 0 && len(layers) == 0:
		fmt.Fprintln(w, "nothing to prune: no dirs of builds that are gone, no layers that nothing needs")
	case !pruneSources:
		fmt.Fprintf(w, "pruned %d dir(s) and %d layer(s)\n", len(dirs), len(layers))
	case len(dirs) == 0 && len(layers) == 0 && len(removed) == 0:
		fmt.Fprintf(w, "nothing to prune: no dirs of builds that are gone, no layers that nothing needs, no sources unused for %s\n", c.String("older-than"))
	default:
		fmt.Fprintf(w, "pruned %d dir(s), %d layer(s) and %d source(s) of %s\n", len(dirs), len(layers), len(removed), progress.Bytes(freed))
	}
	return nil
}

// parseAge reads --older-than: a whole number of days (30d), the unit caches are thought of in
// and one that time.ParseDuration lacks, or a Go duration (12h, 90m, 0).
func parseAge(s string) (time.Duration, error) {
	const day = 24 * time.Hour
	bad := fmt.Errorf("%q: want an age like 30d, 12h or 90m", s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/int64(day) {
			return 0, bad
		}
		return time.Duration(n) * day, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, bad
	}
	return d, nil
}

// shortDigest is the first 12 hex digits of a layer digest, as `ingot images ls` shows them.
func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
