package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/ingot-build/ingot/internal/progress"
	"golang.org/x/sync/errgroup"
)

// ProduceAll makes several outputs of src in dir at once, one Produce each: their qemu-img
// processes and compressors overlap, so a set of outputs takes about as long as the slowest of
// them, not the sum, when disk and cores allow. Artifacts come back in spec order. It is the one
// way ingot makes a set of outputs: a build's convert step and `ingot convert IN --to FMT[,FMT…]`
// (with any image qemu-img reads as src) both run it.
//
// It is all or nothing: the specs are validated and checked for clashes (Clashes) first, and if
// one output fails, the others are cancelled, the files of those that were already published are
// removed, and the error is an *OutputError naming the failed spec. (Produce itself leaves
// nothing behind when it fails or is cancelled.)
//
// Each output is reported to rep under its main file's name, and ends there as it ends: an output
// stopped because another failed says so. A nil rep reports nothing.
func ProduceAll(ctx context.Context, src, srcFormat string, specs []OutputSpec, dir string, rep progress.Reporter) ([]Artifact, error) {
	if rep == nil {
		rep = progress.Nop()
	}
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
	var failed atomic.Pointer[OutputError]
	for i, s := range specs {
		tr := rep.Start(s.Files()[0], 0)
		g.Go(func() error {
			arts, err := Produce(gctx, src, srcFormat, s, dir, func(done, total int64) {
				tr.SetTotal(total)
				tr.SetCurrent(done)
			})
			if err != nil {
				oe := &OutputError{Index: i, Err: err}
				if !failed.CompareAndSwap(nil, oe) && gctx.Err() != nil {
					// Cancelled because another output failed: say which, not "context canceled".
					tr.Done(fmt.Errorf("stopped: %s failed", specs[failed.Load().Index].Files()[0]))
					return oe
				}
				tr.Done(err)
				return oe
			}
			tr.Done(nil)
			results[i] = arts
			return nil
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

// OutputError is the failure of one output of a ProduceAll set, so that a caller can point at
// the output as its user wrote it (a recipe's line, a --to item).
type OutputError struct {
	// Index is the failed output's place in the specs given to ProduceAll.
	Index int
	// Err is Produce's error, which names the output's file.
	Err error
}

func (e *OutputError) Error() string { return e.Err.Error() }

func (e *OutputError) Unwrap() error { return e.Err }
