package main

import (
	"errors"
	"slices"
	"time"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/internal/metrics"
)

// buildMetrics is what `ingot build --metrics` records of one build: from the manifest when it
// succeeded, from the StepError's timings when it failed (a failed build has no manifest).
func buildMetrics(recipe string, started, finished time.Time, res *bake.Result, err error) metrics.Build {
	mb := metrics.Build{Recipe: recipe, Success: err == nil && res != nil, Started: started, Finished: finished}
	var steps []bake.StepTiming
	var se *bake.StepError
	switch {
	case mb.Success && res.Manifest != nil:
		steps = slices.Concat(res.Manifest.Steps, res.Manifest.Provisioners)
		for _, o := range res.Manifest.Outputs {
			mb.Artifacts = append(mb.Artifacts, metrics.Artifact{File: o.File, Format: o.Format, Bytes: o.Size})
		}
	case errors.As(err, &se):
		steps = slices.Concat(se.Steps, se.Provisioners)
	}
	for _, s := range steps {
		mb.Steps = append(mb.Steps, metrics.Step{Name: s.Step, Seconds: s.Seconds})
	}
	return mb
}
