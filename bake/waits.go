package bake

import (
	"slices"
	"sync"
	"time"

	"github.com/ingot-build/ingot/internal/progress"
)

// waits records when a build was waiting on something outside ingot: the guest (boots, SSH
// commands, cloud-init, shutdowns) or qemu-img. What is left of a step's wall time is ingot's
// own overhead, which the manifest reports per step and bench/overhead.sh sums up. Spans may
// overlap (concurrent conversions); they are merged before they are counted.
type waits struct {
	mu    sync.Mutex
	spans []span
}

type span struct{ from, to time.Time }

// track runs fn and records its duration as waiting.
func (w *waits) track(fn func() error) error {
	from := time.Now()
	err := fn()
	w.mu.Lock()
	w.spans = append(w.spans, span{from, time.Now()})
	w.mu.Unlock()
	return err
}

// within is the time between from and to covered by at least one span.
func (w *waits) within(from, to time.Time) time.Duration {
	w.mu.Lock()
	var clipped []span
	for _, s := range w.spans {
		s.from, s.to = later(s.from, from), earlier(s.to, to)
		if s.to.After(s.from) {
			clipped = append(clipped, s)
		}
	}
	w.mu.Unlock()
	slices.SortFunc(clipped, func(a, b span) int { return a.from.Compare(b.from) })
	var total time.Duration
	var cur span
	for i, s := range clipped {
		switch {
		case i == 0:
			cur = s
		case !s.from.After(cur.to):
			cur.to = later(cur.to, s.to)
		default:
			total += cur.to.Sub(cur.from)
			cur = s
		}
	}
	if len(clipped) > 0 {
		total += cur.to.Sub(cur.from)
	}
	return total
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// waitShown is waits.track for a wait the user sees the build sit in, shown by the build's
// progress reporter as a task with the time so far (a spinner on a terminal, a line every 10 s
// otherwise): a guest booting under TCG keeps a build silent for minutes, which looks hung.
func (b *build) waitShown(what string, fn func() error) error {
	task := progress.Begin(b.reporter(), b.r.Name+": "+what)
	err := b.waits.track(fn)
	task.Done(err)
	return err
}

// reporter is Options.Progress, or by default a log line every 10 s through the build's logger.
func (b *build) reporter() progress.Reporter {
	if b.opts.Progress != nil {
		return b.opts.Progress
	}
	return progress.NewLog(b.log, 10*time.Second)
}
