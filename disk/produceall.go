package disk

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sync/errgroup"
)

// ProduceAll makes several outputs of src in dir at once, one Produce each: their qemu-img
// processes and compressors overlap, so a build's outputs take about as long as the slowest of
// them, not the sum, when disk and cores allow. Artifacts come back in spec order.
//
// It is all or nothing: the specs are validated and checked for clashes (Clashes) first, and
// if one output fails the others are cancelled and anything they published is removed. This is
// what `ingot convert IN --to FMT[,FMT…]` runs, with any image qemu-img reads as src.
//
// progress, if not nil, is called with the index of the spec, from several goroutines at once.
func ProduceAll(ctx context.Context, src string, specs []OutputSpec, dir string, progress func(i int, done, total int64)) ([]Artifact, error) {
	for i, s := range specs {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("output %d: %w", i+1, err)
		}
	}
	var clashes []error
	for _, c := range Clashes(specs) {
		clashes = append(clashes, fmt.Errorf("outputs %d and %d: %w", c.First+1, c.Second+1, c))
	}
	if err := errors.Join(clashes...); err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	results := make([][]Artifact, len(specs))
	for i, s := range specs {
		var report func(done, total int64)
		if progress != nil {
			report = func(done, total int64) { progress(i, done, total) }
		}
		g.Go(func() error {
			arts, err := Produce(gctx, src, s, dir, report)
			results[i] = arts
			return err
		})
	}
	err := g.Wait()
	var all []Artifact
	for _, r := range results {
		all = append(all, r...)
	}
	if err != nil {
		for _, a := range all {
			os.Remove(a.Path)
		}
		return nil, err
	}
	return all, nil
}
