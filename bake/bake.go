// Package bake is the pipeline: one recipe in, one verified set of artifacts out (shared/DESIGN.md,
// "The job, as a pipeline").
//
// Each step runs in order and may register cleanups where it takes a resource (a work dir, a
// running machine, a staging dir); cleanups run in reverse whatever happens (error, Ctrl-C,
// SIGTERM), like Packer's multistep but with a context throughout and typed state instead of a
// state bag. A cancelled build reports the step it was interrupted in.
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
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/recipes"
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
	Accel string
	// Tool is recorded in the manifest.
	Tool ToolInfo
}

// ToolInfo is what the manifest says about the tools that made an image.
type ToolInfo struct {
	IngotVersion string `json:"ingot_version"`
	IngotCommit  string `json:"ingot_commit"`
	// Driver is the hypervisor driver that ran the build machine: qemu or libvirt.
	Driver      string `json:"driver,omitempty"`
	QEMUVersion string `json:"qemu_version"`
	QemuImgVer  string `json:"qemu_img_version"`
	// Libvirt is the daemon a libvirt build ran on (its QEMU is QEMUVersion).
	Libvirt *LibvirtInfo `json:"libvirt,omitempty"`
}

// LibvirtInfo names the libvirt daemon a build ran on.
type LibvirtInfo struct {
	URI     string `json:"uri"`
	Host    string `json:"host"`
	Version string `json:"version"`
	Pool    string `json:"pool"`
}

// Result is a finished build.
type Result struct {
	Dir      string // OutDir/NAME
	Manifest *Manifest
}

// StepError is a failed build, with the step it failed in.
type StepError struct {
	Step string
	Err  error
	// Steps times the steps that ran, the failed one last, and Provisioners the recipe's
	// provisioners that ran, for metrics: a failed build has no manifest.
	Steps, Provisioners []StepTiming
}

func (e *StepError) Error() string { return fmt.Sprintf("step %s: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Check reports, all at once, what in a loaded recipe this build cannot do, before anything is
// fetched or started: `ingot validate` runs it too, so a recipe that validates does not fail its
// build in the first second.
func Check(r *recipes.Recipe) error {
	var errs []error
	if d := r.Machine.Driver; d != "" && d != "qemu" && d != "libvirt" {
		errs = append(errs, fmt.Errorf("%s: machine.driver %q: want qemu or libvirt", r.Machine.Pos, d))
	}
	if _, err := outputSpecs(r); err != nil {
		errs = append(errs, err)
	}
	if err := cloudinit.CheckRecipe(r.CloudInit.UserData, r.CloudInit.NetworkConfig, r.SSH.User); err != nil {
		errs = append(errs, fmt.Errorf("%s: cloud_init: %w", r.CloudInit.Pos, err))
	}
	return errors.Join(errs...)
}

// step is one stage of the pipeline.
type step struct {
	name string
	run  func(b *build, ctx context.Context) error
}

// Build runs the pipeline for one recipe.
func Build(ctx context.Context, opts Options) (*Result, error) {
	b, err := newBuild(opts)
	if err != nil {
		return nil, err
	}
	if err := Check(b.r); err != nil {
		return nil, &StepError{Step: "plan", Err: err}
	}
	steps := []step{
		{"fetch", (*build).fetch},
		{"prepare", (*build).prepare},
		{"install", (*build).install},
		{"boot", (*build).boot},
		{"connect", (*build).connect},
		{"provision", (*build).provision},
		{"inventory", (*build).inventory},
		{"generalize", (*build).generalize},
		{"shutdown", (*build).shutdown},
		{"snapshot", (*build).snapshot},
		{"convert", (*build).convert},
		{"record", (*build).record},
	}
	runErr := b.run(ctx, steps)
	cleanErr := b.cleanup()
	if runErr != nil {
		return nil, errors.Join(runErr, cleanErr)
	}
	if cleanErr != nil {
		return nil, fmt.Errorf("clean up: %w", cleanErr)
	}
	return &Result{Dir: b.outDir, Manifest: b.manifest}, nil
}

func (b *build) run(ctx context.Context, steps []step) error {
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return &StepError{Step: s.name, Err: fmt.Errorf("interrupted: %w", err)}
		}
		started := time.Now()
		b.log.Info("step start", "step", s.name)
		err := s.run(b, ctx)
		took := time.Since(started)
		b.timings = append(b.timings, StepTiming{Step: s.name, Seconds: took.Seconds(), Waiting: b.waits.within(started, started.Add(took)).Seconds()})
		if err != nil {
			b.failed = true
			if ctx.Err() != nil {
				b.log.Error("build interrupted", "step", s.name, "after", took.Round(time.Millisecond))
				return &StepError{Step: s.name, Err: fmt.Errorf("interrupted: %w", errors.Join(ctx.Err(), err)), Steps: b.timings, Provisioners: b.provTimings}
			}
			b.log.Error("step failed", "step", s.name, "after", took.Round(time.Millisecond), "err", err)
			return &StepError{Step: s.name, Err: err, Steps: b.timings, Provisioners: b.provTimings}
		}
		b.log.Info("step done", "step", s.name, "duration", took.Round(time.Millisecond))
	}
	return nil
}

// cleanup runs the registered cleanups in reverse, with a fresh bounded context: the build's may
// be cancelled already, and a cleanup must still stop the machine and remove the work dir.
func (b *build) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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
