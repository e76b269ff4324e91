package main

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/internal/metrics"
	"github.com/ingot-build/ingot/manifest"
)

func TestBuildMetrics(t *testing.T) {
	start := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	end := start.Add(90 * time.Second)
	// A recipe step is a unit of the build's steps, and the manifest repeats it in provisioners:
	// it is one series, not two.
	prov := manifest.StepTiming{Step: "provision[0] shell", At: "r.yaml:9:5", Seconds: 30}
	m := &manifest.Manifest{
		Steps:        []manifest.StepTiming{{Step: "boot", Seconds: 40}, prov, {Step: "inventory", Seconds: 1}},
		Provisioners: []manifest.StepTiming{prov},
		Outputs:      []manifest.File{{File: "web.qcow2", Format: "qcow2", Size: 1 << 20}, {File: "web.raw.bmap", Format: "bmap", Size: 900}},
	}
	resumed := &manifest.Manifest{Steps: []manifest.StepTiming{
		{Step: "provision[0] shell", At: "r.yaml:9:5", Restored: true}, {Step: "provision[1] shell", At: "r.yaml:10:5", Seconds: 3}}}
	failedAt := &bake.StepError{Step: "provision[0] shell", At: "r.yaml:9:5", Err: errors.New("exit 1"),
		Steps: []manifest.StepTiming{{Step: "boot", Seconds: 40}, {Step: "provision[0] shell", At: "r.yaml:9:5", Seconds: 2}}}
	tests := []struct {
		name string
		res  *bake.Result
		err  error
		want metrics.Build
	}{
		{"success", &bake.Result{Manifest: m}, nil, metrics.Build{Recipe: "web", Success: true, Started: start, Finished: end,
			Steps:       []metrics.Step{{Name: "boot", Seconds: 40}, {Name: "provision[0] shell", Seconds: 30}, {Name: "inventory", Seconds: 1}},
			Artifacts:   []metrics.Artifact{{File: "web.qcow2", Format: "qcow2", Bytes: 1 << 20}, {File: "web.raw.bmap", Format: "bmap", Bytes: 900}},
			RecipeSteps: 1}},
		{"resumed", &bake.Result{Manifest: resumed}, nil, metrics.Build{Recipe: "web", Success: true, Started: start, Finished: end,
			Steps:       []metrics.Step{{Name: "provision[0] shell"}, {Name: "provision[1] shell", Seconds: 3}},
			RecipeSteps: 2, Restored: 1}},
		// An up-to-date build ran nothing: the manifest's steps are the earlier build's.
		{"up to date", &bake.Result{Manifest: m, UpToDate: true}, nil, metrics.Build{Recipe: "web", Success: true, Started: start, Finished: end,
			Artifacts: []metrics.Artifact{{File: "web.qcow2", Format: "qcow2", Bytes: 1 << 20}, {File: "web.raw.bmap", Format: "bmap", Bytes: 900}},
			UpToDate:  true}},
		{"failed step, wrapped", nil, fmt.Errorf("web: %w", failedAt), metrics.Build{Recipe: "web", Started: start, Finished: end,
			Steps: []metrics.Step{{Name: "boot", Seconds: 40}, {Name: "provision[0] shell", Seconds: 2}}, RecipeSteps: 1}},
		{"failed before any step", nil, errors.New("bake: Recipe, Driver and Sources are required"), metrics.Build{Recipe: "web", Started: start, Finished: end}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := buildMetrics("web", start, end, tt.res, tt.err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
