package bake

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ingot-build/ingot/drift"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
)

// LoadBaseline reads what `ingot build --baseline ARG` compares a build with: an output
// directory, a manifest.json, or image:NAME from store (nil: no image store). The command runs
// it before any build, so that a baseline it cannot read is bad input, not a failed build.
func LoadBaseline(arg string, store *images.Store) (*drift.Side, error) {
	s, err := drift.Load(arg, func(name string) (string, error) {
		if store == nil {
			return "", fmt.Errorf("image:%s: there is no image store", name)
		}
		return store.RecordDir(name)
	})
	if err != nil {
		return nil, fmt.Errorf("--baseline %s: %w", arg, err)
	}
	return &s, nil
}

// checkDrift checks a recipe's drift: section: every threshold and glob, at its place.
func checkDrift(r *recipes.Recipe) []error {
	var errs []error
	for i, expr := range r.Drift.FailOn {
		if _, err := drift.ParseThreshold(expr); err != nil {
			errs = append(errs, fmt.Errorf("%s: drift.fail_on[%d]: %w", posOf(r, fmt.Sprintf("drift.fail_on[%d]", i), r.Drift.Pos), i, err))
		}
	}
	for i, g := range r.Drift.Ignore {
		if err := drift.ValidatePattern(g); err != nil {
			errs = append(errs, fmt.Errorf("%s: drift.ignore[%d]: %w", posOf(r, fmt.Sprintf("drift.ignore[%d]", i), r.Drift.Pos), i, err))
		}
	}
	return errs
}

// posOf is where field is written in r, or def.
func posOf(r *recipes.Recipe, field string, def recipes.Pos) recipes.Pos {
	if p, ok := r.PosOf(field); ok {
		return p
	}
	return def
}

// DriftError is a build that crossed its recipe's drift thresholds: its outputs are in
// quarantine, not published.
type DriftError struct {
	Baseline   string
	Crossed    []drift.Crossed
	Quarantine string // where the outputs, manifest and drift report are
}

func (e *DriftError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "drift from the baseline %s crossed %d threshold(s) of drift.fail_on:", e.Baseline, len(e.Crossed))
	for _, c := range e.Crossed {
		fmt.Fprintf(&b, "\n    %s", c)
	}
	fmt.Fprintf(&b, "\nnothing was published; the outputs, their manifest and the diff (drift.txt) are in quarantine: %s", e.Quarantine)
	return b.String()
}

// driftReports are the diff's files in the output dir (and in quarantine).
var driftReports = []string{"drift.txt", "drift.json"}

// compareBaseline is the drift step, after the test boots: with --baseline, it compares this
// build (packages, file inventory, outputs) with the baseline, writes the diff beside the outputs
// (drift.txt, drift.json), keeps its summary for the manifest, and notes the recipe's thresholds
// it crosses (record then quarantines instead of publishing) and, with --skip-if-same, that
// nothing differs (record then publishes nothing).
func (b *build) compareBaseline(ctx context.Context) error {
	base := b.opts.Baseline
	if base == nil {
		return nil
	}
	cur := drift.Side{Label: "this build", Manifest: &manifest.Manifest{
		Name: b.r.Name, BuildID: b.id, Started: b.started.UTC(), Packages: b.packages, Outputs: b.outputs,
	}, Inventory: b.files}
	rep := drift.Compare(*base, cur, drift.Options{Ignore: b.r.Drift.Ignore})
	ts, err := drift.ParseThresholds(b.r.Drift.FailOn)
	if err != nil {
		return fmt.Errorf("%s: drift.fail_on: %w", b.r.Drift.Pos, err) // Check refused it already
	}
	crossed, err := rep.Check(ts)
	if err != nil {
		return fmt.Errorf("%s: drift.fail_on: %w", b.r.Drift.Pos, err)
	}
	var text, js bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		return err
	}
	if err := rep.WriteJSON(&js); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"drift.txt": text.Bytes(), "drift.json": js.Bytes()} {
		if err := os.WriteFile(filepath.Join(b.stagingDir(), name), data, 0o644); err != nil {
			return fmt.Errorf("write the drift report: %w", err)
		}
	}
	sum := rep.Summary()
	b.drift = &sum
	b.driftCrossed = crossed
	for _, line := range strings.Split(strings.TrimRight(text.String(), "\n"), "\n") {
		b.log.Info("drift: " + line)
	}
	switch {
	case len(crossed) > 0:
		b.log.Warn("drift thresholds crossed: the outputs go to quarantine", "crossed", len(crossed))
	case rep.Same && b.opts.SkipIfSame:
		b.skipPublish = true
	}
	return nil
}

// quarantineDir is where a build that crossed its drift thresholds leaves its outputs.
func (b *build) quarantineDir() string {
	return b.outDir + ".quarantine"
}
