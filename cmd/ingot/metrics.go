package main

import (
	"errors"
	"time"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/internal/metrics"
	"github.com/ingot-build/ingot/manifest"
)

// buildMetrics is what `ingot build --metrics` records of one build: from the manifest when it
// succeeded, from the StepError's timings when it failed (a failed build has no manifest).
func buildMetrics(recipe string, started, finished time.Time, res *bake.Result, err error) metrics.Build {
	mb := metrics.Build{Recipe: recipe, Success: err == nil && res != nil, Started: started, Finished: finished}
	// Steps lists every unit the build ran, each recipe step among them: the manifest's
	// provisioners repeat those, and are left out so that no series comes twice.
	var steps []manifest.StepTiming
	var se *bake.StepError
	switch {
	case mb.Success && res.UpToDate:
		// Nothing ran: the manifest's steps are an earlier build's, not this one's.
		mb.UpToDate = true
		for _, o := range res.Manifest.Outputs {
			mb.Artifacts = append(mb.Artifacts, metrics.Artifact{File: o.File, Format: o.Format, Bytes: o.Size})
		}
	case mb.Success && res.Manifest != nil:
		steps = res.Manifest.Steps
		for _, o := range res.Manifest.Outputs {
			mb.Artifacts = append(mb.Artifacts, metrics.Artifact{File: o.File, Format: o.Format, Bytes: o.Size})
		}
	case errors.As(err, &se):
		steps = se.Steps
	}
	for _, s := range steps {
		mb.Steps = append(mb.Steps, metrics.Step{Name: s.Step, Seconds: s.Seconds})
		if s.At != "" { // a recipe step
			mb.RecipeSteps++
			if s.Restored {
				mb.Restored++
			}
		}
	}
	return mb
}
