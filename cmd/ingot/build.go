package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/drift"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/internal/metrics"
	"github.com/ingot-build/ingot/internal/qemuimg"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/oci"
	"github.com/ingot-build/ingot/recipes"
	"github.com/ingot-build/ingot/sign"
	"github.com/ingot-build/ingot/source"
)

var varFlag = &cli.StringSliceFlag{Name: "var", Usage: "set a recipe variable: `NAME=VALUE` (repeatable; also INGOT_VAR_NAME)"}

func parseVars(c *cli.Context) (map[string]string, error) {
	vars := map[string]string{}
	for _, kv := range c.StringSlice("var") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("--var %q: want NAME=VALUE", kv)}
		}
		vars[k] = v
	}
	return vars, nil
}

// loadRecipes loads every named recipe (a file, or a catalogue name) and reports all their errors.
func loadRecipes(c *cli.Context) ([]*recipes.Recipe, error) {
	if c.NArg() == 0 {
		return nil, usageError{errors.New("name at least one recipe (a file, or a built-in name: see 'ingot recipes ls')")}
	}
	vars, err := parseVars(c)
	if err != nil {
		return nil, err
	}
	var out []*recipes.Recipe
	var errs []error
	for _, arg := range c.Args().Slice() {
		r, err := recipes.Resolve(arg, vars, os.Environ())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, usageError{err}
	}
	// A --var no recipe declares is a typo until proven otherwise.
	if names := recipes.UndeclaredVars(vars, out...); len(names) > 0 {
		return nil, usageError{fmt.Errorf("--var %s: no recipe named on the command line declares it", strings.Join(names, ", "))}
	}
	return out, nil
}

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check recipes without building anything",
		ArgsUsage: "RECIPE…",
		Flags: []cli.Flag{varFlag,
			&cli.BoolFlag{Name: "resolve", Usage: "also resolve each source's pin: read a file: pin's checksum file (not the source itself) and print the digest the source must have"},
		},
		Action: func(c *cli.Context) error {
			rs, err := loadRecipes(c)
			if err != nil {
				return err
			}
			var fetcher *source.Fetcher
			if c.Bool("resolve") {
				if fetcher, err = openSources(slog.New(slog.DiscardHandler)); err != nil {
					return err
				}
			}
			var errs []error
			for _, r := range rs {
				if err := bake.Check(r); err != nil {
					errs = append(errs, err)
					continue
				}
				if fetcher != nil {
					if err := printPin(c, fetcher, r); err != nil {
						errs = append(errs, err)
						continue
					}
				}
				fmt.Fprintf(c.App.Writer, "%s: ok (%s)\n", r.File, r.Name)
			}
			if err := errors.Join(errs...); err != nil {
				return usageError{err}
			}
			return nil
		},
	}
}

// printPin resolves a recipe's source pin without downloading the source (source.Fetcher.Resolve)
// and prints the digest the source will be verified with: the answer to "which image does this
// file: pin mean today?", and a check that the checksum file lists the source at all.
func printPin(c *cli.Context, f *source.Fetcher, r *recipes.Recipe) error {
	var in source.Input
	var pos fmt.Stringer
	switch src := r.Source; {
	case src.Disk != nil:
		in, pos = source.Input{URL: src.Disk.URL, SHA256: src.Disk.Pin()}, src.Disk.Pos
	case src.ISO != nil:
		in, pos = source.Input{URL: src.ISO.URL, SHA256: src.ISO.Pin()}, src.ISO.Pos
	default:
		return nil // an image-store source has no pin to resolve
	}
	sum, err := f.Resolve(c.Context, in)
	if err != nil {
		return fmt.Errorf("%s: resolve the source's pin: %w", pos, err)
	}
	if !strings.Contains(sum, ":") {
		sum = "sha256:" + sum
	}
	fmt.Fprintf(c.App.Writer, "%s: source %s %s\n", r.File, in.URL, sum)
	return nil
}

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "bake images from recipes",
		ArgsUsage: "RECIPE…",
		Flags: append([]cli.Flag{
			varFlag,
			&cli.StringFlag{Name: "out", Value: defaultOutDir, Usage: "publish outputs into `DIR`/NAME/"},
			&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Value: 1, Usage: "build `N` recipes at once"},
			&cli.BoolFlag{Name: "keep-on-failure", Usage: "keep a failed build's work dir and say how to boot it"},
			&cli.BoolFlag{Name: "no-cache", Usage: "neither restore nor take checkpoints: boot and run every step"},
			&cli.BoolFlag{Name: "force", Usage: "build even when the published outputs are up to date with the recipe and its files"},
			&cli.StringFlag{Name: "baseline", Usage: "compare each build with `DIR` (an output dir), a manifest.json or image:NAME; the recipe's drift: thresholds decide whether it publishes (docs/drift.md)"},
			&cli.BoolFlag{Name: "skip-if-same", Usage: "with --baseline: publish nothing when nothing differs from the baseline beyond the noise list"},
			&cli.StringFlag{Name: "sign-key", Usage: "sign SHA256SUMS, the manifest, the SBOMs and the provenance with the minisign secret key `FILE` (its password, if any, from INGOT_SIGN_PASSWORD)", EnvVars: []string{"INGOT_SIGN_KEY"}},
			&cli.BoolFlag{Name: "cyclonedx", Usage: "also write a CycloneDX 1.5 SBOM (sbom.cdx.json) beside the SPDX one"},
			&cli.StringFlag{Name: "test-boot", Usage: "override the recipes' test.boot: `first` (a full test boot of the first output, the others to the kernel), all, or none"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json (one event a line)"},
			&cli.StringFlag{Name: "accel", Usage: "override machine.accel: " + hypervisor.Choices(hypervisor.Accels())},
			workDirFlag(),
			&cli.StringFlag{Name: "metrics", Usage: "write the builds' SLIs (success, durations, sizes) to `FILE` in OpenMetrics text, atomically, for node_exporter's textfile collector"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging"},
			storeFlag,
			&cli.StringFlag{Name: "push", Usage: "after the build publishes, push it to `oci://REGISTRY/REPO:TAG` (as ingot push does; one recipe only); a failed push fails the build and the outputs stay published"},
		}, slices.Concat(driverFlags, registryFlags())...),
		Action: func(c *cli.Context) error {
			testBoot := c.String("test-boot")
			if testBoot != "" && testBoot != recipes.TestBootFirst && testBoot != recipes.TestBootAll && testBoot != recipes.TestBootNone {
				return usageError{fmt.Errorf("--test-boot %q: want first, all or none", testBoot)}
			}
			var accel hypervisor.Accel
			if c.IsSet("accel") {
				a, err := hypervisor.ParseAccel(c.String("accel"))
				if err != nil {
					return usageError{fmt.Errorf("--accel %w", err)}
				}
				accel = a
			}
			out, err := newOutput(c.App.ErrWriter, c.String("log-format"), c.Bool("verbose"), os.Getenv)
			if err != nil {
				return err
			}
			defer out.Close()
			log := out.Log
			rs, err := loadRecipes(c)
			if err != nil {
				return err
			}
			pushRef := c.String("push")
			var remote oci.Remote
			if pushRef != "" {
				if len(rs) != 1 {
					return usageError{fmt.Errorf("--push takes one recipe, got %d: each build needs a tag of its own", len(rs))}
				}
				if remote, err = remoteFor(c, out); err != nil {
					return err
				}
				if err := checkCredentials(remote, pushRef); err != nil {
					return err
				}
			}
			fetcher, err := openSources(log, source.WithProgress(out.Progress))
			if err != nil {
				return err
			}
			work, err := workRoot(c)
			if err != nil {
				return err
			}
			tool := manifest.Tool{IngotVersion: version, IngotCommit: commit}
			if img, err := qemuimg.Find(c.Context); err == nil {
				tool.QemuImgVer = img.Version
			}
			store, err := openStore(c)
			if err != nil {
				return err
			}
			var key *sign.Key
			if p := c.String("sign-key"); p != "" {
				if key, err = sign.LoadKey(p); err != nil {
					return usageError{fmt.Errorf("--sign-key: %w", err)}
				}
				// The key is open: its password has no more use, and must not reach the children.
				_ = os.Unsetenv(sign.PasswordEnv)
			}
			var baseline *drift.Side
			if b := c.String("baseline"); b != "" {
				if baseline, err = bake.LoadBaseline(b, store); err != nil {
					return usageError{err}
				}
			} else if c.Bool("skip-if-same") {
				return usageError{errors.New("--skip-if-same needs --baseline: the build it would be the same as")}
			}
			ds, err := openDrivers(c, log, rs, tool)
			if err != nil {
				return err
			}
			defer ds.Close()
			g, ctx := errgroup.WithContext(c.Context)
			g.SetLimit(max(1, c.Int("jobs")))
			failed := make([]error, len(rs))
			measured := make([]metrics.Build, len(rs))
			dirs := make([]string, len(rs)) // the output dir of each build that succeeded
			for i, r := range rs {
				g.Go(func() error {
					started := time.Now()
					res, err := bake.Build(ctx, bake.Options{
						Recipe: r, OutDir: c.String("out"), WorkRoot: work,
						KeepOnFailure: c.Bool("keep-on-failure"), Logger: log, Driver: ds.byName[driverFor(c, r)],
						Sources: fetcher, Images: store, Accel: accel, Tool: ds.tools[driverFor(c, r)],
						Progress: out.Progress, NoCache: c.Bool("no-cache"), Force: c.Bool("force"), TestBoot: testBoot,
						Baseline: baseline, SkipIfSame: c.Bool("skip-if-same"), SignKey: key, CycloneDX: c.Bool("cyclonedx"),
					})
					measured[i] = buildMetrics(r.Name, started, time.Now(), res, err)
					if err != nil {
						failed[i] = fmt.Errorf("%s: %w", r.Name, err)
						log.Error("build failed", "build", r.Name, "err", err)
						return nil // the other builds go on
					}
					if res.Skipped {
						log.Info("build finished; nothing differs from the baseline, so nothing was published", "build", r.Name, "out", res.Dir)
						return nil
					}
					log.Info("build finished", "build", r.Name, "out", res.Dir)
					dirs[i] = res.Dir
					return nil
				})
			}
			_ = g.Wait()
			var pushed string
			if pushRef != "" && dirs[0] != "" {
				res, err := pushBuild(c.Context, dirs[0], pushRef, oci.PushOptions{Remote: remote, Progress: out.Progress})
				if err != nil {
					failed = append(failed, err)
					log.Error("push failed; the outputs stay published", "out", dirs[0], "err", err)
				} else {
					pushed = res.Build.Digested()
					log.Info("pushed", "out", dirs[0], "to", pushed)
				}
			}
			// The bars are done with: what follows is printed as it is, and stdout, which may be
			// the same terminal, gets the output dirs only once nothing redraws over them.
			out.Close()
			for _, d := range dirs {
				if d != "" {
					fmt.Fprintln(c.App.Writer, d)
				}
			}
			if pushed != "" {
				fmt.Fprintln(c.App.Writer, pushed)
			}
			if path := c.String("metrics"); path != "" {
				if err := metrics.Write(path, measured...); err != nil {
					failed = append(failed, fmt.Errorf("--metrics: %w", err))
					log.Error("could not write the metrics", "file", path, "err", err)
				}
			}
			if err := errors.Join(failed...); err != nil {
				if c.Context.Err() != nil {
					var se *bake.StepError
					if errors.As(err, &se) {
						fmt.Fprintf(c.App.ErrWriter, "ingot: interrupted during step %s\n", se.Step)
					}
					return context.Canceled
				}
				return fmt.Errorf("%w", errReported)
			}
			return nil
		},
	}
}

func recipesCommand() *cli.Command {
	return &cli.Command{
		Name:  "recipes",
		Usage: "the built-in recipe catalogue",
		Subcommands: []*cli.Command{
			{
				Name:  "ls",
				Usage: "list the built-in recipes",
				Action: func(c *cli.Context) error {
					for _, e := range recipes.Catalog() {
						fmt.Fprintf(c.App.Writer, "%-28s %s\n", e.Name, e.Description)
					}
					return nil
				},
			},
			{
				Name:      "show",
				Usage:     "print a built-in recipe",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError{errors.New("name one built-in recipe (see 'ingot recipes ls')")}
					}
					data, ok := recipes.CatalogSource(c.Args().First())
					if !ok {
						return usageError{fmt.Errorf("no built-in recipe %q; see 'ingot recipes ls'", c.Args().First())}
					}
					_, err := c.App.Writer.Write(data)
					return err
				},
			},
		},
	}
}
