// Package bake is the pipeline: one recipe in, one verified set of artifacts out (shared/DESIGN.md,
// "The job, as a pipeline").
//
// A runner (run) takes the build through a list of units in order: the pipeline's stages (fetch,
// prepare, install, boot, connect, inventory, generalize, shutdown, snapshot, convert, record),
// and between connect and inventory one unit per step of the recipe's provision list, named
// "provision[N] KIND" and placed in the recipe, so that each is timed, reported and failed on its
// own. A unit may register cleanups where it takes a resource (a work dir, a running machine, a
// staging dir); cleanups run in reverse whatever happens (error, Ctrl-C, SIGTERM), with a fresh
// bounded context, like Packer's multistep but with a context throughout and typed state instead
// of a state bag. A cancelled build reports the unit it was interrupted at.
//
// The pipeline reaches the hypervisor through hypervisor.Driver and the guest through the small
// guestConn interface, so the runner, the cleanups and whole builds are unit-tested with fakes of
// both; the end-to-end tests keep what only a real guest proves.
package bake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ingot-build/ingot/cloudinit"
	"github.com/ingot-build/ingot/drift"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
	"github.com/ingot-build/ingot/sign"
	"github.com/ingot-build/ingot/source"
)

// Options configure one build.
type Options struct {
	Recipe *recipes.Recipe
	// OutDir is where the outputs are published: OutDir/NAME/ (default ./out).
	OutDir string
	// WorkRoot holds per-build private work dirs (default ${XDG_CACHE_HOME:-~/.cache}/ingot/work).
	WorkRoot string
	// KeepOnFailure keeps the work dir (disk, seed, keys, console log) of a failed build and says
	// how to boot it by hand.
	KeepOnFailure bool
	Logger        *slog.Logger
	Driver        hypervisor.Driver
	Sources       *source.Fetcher
	// Images is the image store: where the built disk is kept as a named layer (step snapshot)
	// and where source.image is looked up. Nil skips the snapshot.
	Images *images.Store
	// Progress shows conversions as they go (default: a log line every 10 s).
	Progress progress.Reporter
	// Accel overrides the recipe's machine.accel when set.
	Accel hypervisor.Accel
	// NoCache neither restores nor takes checkpoints (--no-cache).
	NoCache bool
	// Force builds even when the published outputs are up to date with the inputs (--force).
	Force bool
	// Baseline is what the build is compared with after its test boots (--baseline; see
	// LoadBaseline): the diff goes beside the outputs and its summary into the manifest, and a
	// threshold of the recipe's drift: crossed keeps the outputs in quarantine.
	Baseline *drift.Side
	// SkipIfSame publishes nothing when nothing differs from Baseline beyond the noise list.
	SkipIfSame bool
	// SignKey signs SHA256SUMS, the manifest, the SBOMs and the provenance (--sign-key).
	SignKey *sign.Key
	// CycloneDX writes a CycloneDX 1.5 SBOM beside the SPDX one (--cyclonedx).
	CycloneDX bool
	// TestBoot overrides the recipe's test.boot (recipes.TestBootFirst, TestBootAll or
	// TestBootNone) when set: --test-boot.
	TestBoot string
	// Tool is recorded in the manifest.
	Tool manifest.Tool
	// Getenv reads the environment variables the recipe's secrets: name (nil: os.LookupEnv).
	Getenv func(string) (string, bool)
}

// Result is a finished build.
type Result struct {
	Dir      string // OutDir/NAME
	Manifest *manifest.Manifest
	// Skipped says the build ran but published nothing: nothing differed from its baseline
	// (SkipIfSame). Dir holds the earlier build; Manifest is this one's, unpublished.
	Skipped bool
	// UpToDate says nothing ran: the build published in Dir was made from the same inputs, and
	// its files are still what its manifest says. Manifest is that build's.
	UpToDate bool
}

// StepError is a failed build, with the unit it failed in.
type StepError struct {
	// Step names the unit: a pipeline stage ("connect") or a recipe step ("provision[1] shell").
	Step string
	// At is where a failed recipe step is written in the recipe (file:line:col); "" for a stage.
	At  string
	Err error
	// Steps times the units that ran, the failed one last (a recipe step's with its At), for
	// metrics: a failed build has no manifest.
	Steps []manifest.StepTiming
}

// Error names a recipe step by its place first, as compilers do, so that editors can jump to it:
// "web.yaml:31:5: provision[4] shell failed: …" (docs/recipes.md).
func (e *StepError) Error() string {
	if e.At != "" {
		return fmt.Sprintf("%s: %s failed: %v", e.At, e.Step, e.Err)
	}
	return fmt.Sprintf("step %s: %v", e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Check reports, all at once, what in a loaded recipe this build cannot do, before anything is
// fetched or started: `ingot validate` runs it too, so a recipe that validates does not fail its
// build in the first second.
func Check(r *recipes.Recipe) error {
	var errs []error
	if d := r.Machine.Driver; d != "" {
		if _, err := hypervisor.ParseDriverName(d); err != nil {
			errs = append(errs, fmt.Errorf("%s: machine.driver %w", r.Machine.Pos, err))
		}
	}
	if _, err := outputSpecs(r); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, checkDrift(r)...)
	errs = append(errs, checkScanAllow(r)...)
	if err := cloudinit.CheckRecipe(r.CloudInit.UserData, r.CloudInit.NetworkConfig, r.SSH.User); err != nil {
		errs = append(errs, fmt.Errorf("%s: cloud_init: %w", r.CloudInit.Pos, err))
	}
	return errors.Join(errs...)
}

// unit is one step of the runner: a stage of the pipeline, or one step of the recipe's provision
// list. A recipe step's unit carries the step, which says where it is written in the recipe.
type unit struct {
	name   string // "connect", "provision[1] shell"
	recipe *recipes.Step
	index  int // the recipe step's index in the provision list
	run    func(context.Context) error
}

// at is where the unit's recipe step is written (file:line:col), or "" for a pipeline stage.
func (u unit) at() string {
	if u.recipe == nil {
		return ""
	}
	return u.recipe.Pos.String()
}

// units lists the build's units in the order they run.
func (b *build) units() []unit {
	us := []unit{
		{name: "fetch", run: b.fetch},
		{name: "prepare", run: b.prepare},
		{name: "install", run: b.install},
		{name: "boot", run: b.boot},
		{name: "connect", run: b.connect},
	}
	for i := range b.r.Provision {
		s := &b.r.Provision[i]
		name := provisionName(i, s)
		us = append(us, unit{name: name, recipe: s, index: i,
			run: b.onGuest(name, func(ctx context.Context) error {
				if err := b.provision(ctx, i, s); err != nil {
					return err
				}
				// Checkpoint after each step but the last: what follows it (generalize,
				// outputs) is redone by any build that gets that far, and a build with the
				// same last step too is up to date.
				if i < len(b.r.Provision)-1 {
					b.saveCheckpoint(ctx, i+1)
				}
				return nil
			})})
	}
	return append(us,
		unit{name: "inventory", run: b.onGuest("inventory", b.inventory)},
		unit{name: "generalize", run: b.onGuest("generalize", b.generalize)},
		unit{name: "shutdown", run: b.shutdown},
		unit{name: "snapshot", run: b.snapshot},
		unit{name: "scan", run: b.scan},
		unit{name: "convert", run: b.convert},
		unit{name: "test", run: b.test},
		unit{name: "drift", run: b.compareBaseline},
		unit{name: "record", run: b.record},
	)
}

// Build runs the pipeline for one recipe.
func Build(ctx context.Context, opts Options) (*Result, error) {
	b, err := newBuild(opts)
	if err != nil {
		return nil, err
	}
	res, err := b.bake(ctx)
	// Whatever an error carries (a step's output, a console tail), its text holds no secret.
	return res, b.secrets.Error(err)
}

// bake checks the recipe and whether the published build is up to date with it; if not, it runs
// the units, then the cleanups.
func (b *build) bake(ctx context.Context) (*Result, error) {
	if err := Check(b.r); err != nil {
		return nil, &StepError{Step: "plan", Err: err}
	}
	inputs, err := b.inputsDigest(ctx)
	if err != nil {
		return nil, &StepError{Step: "plan", Err: err}
	}
	b.inputs = inputs
	if !b.opts.Force {
		if m, ok := b.upToDate(ctx, inputs); ok {
			b.log.Info("up to date: the published build was made from the same inputs, and its files are intact; --force rebuilds",
				"dir", b.outDir, "build", m.BuildID, "finished", m.Finished)
			return &Result{Dir: b.outDir, Manifest: m, UpToDate: true}, nil
		}
	}
	runErr := b.run(ctx, b.units())
	if err := b.finishCheckpoints(context.WithoutCancel(ctx)); err != nil {
		b.log.Warn("holding the checkpoints to their size cap", "err", err)
	}
	cleanErr := b.cleanup()
	if runErr != nil {
		return nil, errors.Join(runErr, cleanErr)
	}
	if cleanErr != nil {
		return nil, fmt.Errorf("clean up: %w", cleanErr)
	}
	return &Result{Dir: b.outDir, Manifest: b.manifest, Skipped: b.skipPublish}, nil
}

// run runs units in order, timing each, and stops at the first that fails, or before the next
// one once ctx has ended. Either way the build is marked failed, for the cleanups.
func (b *build) run(ctx context.Context, units []unit) error {
	for _, u := range units {
		log := b.log.With("step", u.name)
		if at := u.at(); at != "" {
			log = log.With("at", at)
		}
		if err := ctx.Err(); err != nil {
			b.failed = true
			log.Error("build interrupted before the step started")
			return &StepError{Step: u.name, At: u.at(), Err: fmt.Errorf("interrupted: %w", err), Steps: b.timings}
		}
		if b.restored(u) {
			log.Info("step restored from the checkpoint", "checkpoint", short(b.ck.resumed.Key))
			b.timings = append(b.timings, manifest.StepTiming{Step: u.name, At: u.at(), Restored: true, Checkpoint: b.ck.resumed.Key})
			if u.recipe != nil {
				b.provTimings = append(b.provTimings, b.timings[len(b.timings)-1])
			}
			continue
		}
		started := time.Now()
		log.Info("step start")
		err := u.run(ctx)
		took := time.Since(started)
		t := manifest.StepTiming{Step: u.name, At: u.at(), Seconds: took.Seconds(), Waiting: b.waits.within(started, started.Add(took)).Seconds()}
		t.Checkpoint, b.ck.taken = b.ck.taken, "" // the checkpoint the unit took after its work
		b.timings = append(b.timings, t)
		if u.recipe != nil {
			b.provTimings = append(b.provTimings, t)
		}
		if err != nil {
			b.failed = true
			if ctx.Err() != nil {
				log.Error("build interrupted", "after", took.Round(time.Millisecond))
				err = fmt.Errorf("interrupted: %w", errors.Join(ctx.Err(), err))
			} else {
				log.Error("step failed", "after", took.Round(time.Millisecond), "err", err)
			}
			return &StepError{Step: u.name, At: u.at(), Err: err, Steps: b.timings}
		}
		log.Info("step done", "duration", took.Round(time.Millisecond))
	}
	return nil
}

// cleanupTimeout bounds a build's cleanups unless build.cleanupWithin says otherwise.
const cleanupTimeout = 2 * time.Minute

// cleanup runs the registered cleanups in reverse, with a fresh bounded context: the build's may
// be cancelled already, and a cleanup must still stop the machine and remove the work dir, but
// not wait forever on a hypervisor that does not answer.
func (b *build) cleanup() error {
	within := b.cleanupWithin
	if within == 0 {
		within = cleanupTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var errs []error
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		c := b.cleanups[i]
		if err := c.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	b.cleanups = nil
	return errors.Join(errs...)
}

type cleanup struct {
	name string
	fn   func(context.Context) error
}

// onCleanup registers fn to run when the build ends, in reverse order of registration.
func (b *build) onCleanup(name string, fn func(context.Context) error) {
	b.cleanups = append(b.cleanups, cleanup{name, fn})
}

// DefaultWorkRoot is where builds make their work dirs when Options.WorkRoot is empty
// (${XDG_CACHE_HOME:-~/.cache}/ingot/work), and so where Sweep looks by default.
func DefaultWorkRoot() (string, error) {
	dir, err := source.DefaultCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "work"), nil
}

func mkdirPrivate(path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	return os.Chmod(path, 0o700)
}
