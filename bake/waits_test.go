package bake

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/recipes"
)

func TestWaitsWithinMergesOverlaps(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name     string
		spans    []span
		from, to int
		want     time.Duration
	}{
		{"none", nil, 0, 10, 0},
		{"one inside", []span{{at(2), at(5)}}, 0, 10, 3 * time.Second},
		{"overlapping", []span{{at(1), at(4)}, {at(3), at(6)}}, 0, 10, 5 * time.Second},
		{"nested and apart", []span{{at(8), at(9)}, {at(1), at(6)}, {at(2), at(3)}}, 0, 10, 6 * time.Second},
		{"clipped to the step", []span{{at(0), at(20)}}, 5, 10, 5 * time.Second},
		{"outside", []span{{at(11), at(12)}}, 0, 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := waits{spans: tt.spans}
			if got := w.within(at(tt.from), at(tt.to)); got != tt.want {
				t.Fatalf("within = %v, want %v", got, tt.want)
			}
		})
	}
}

// A wait the user sees is shown as a task named for the build, ended with the wait's error, and
// still counted as waiting; with no reporter it is logged.
func TestWaitShown(t *testing.T) {
	boom := errors.New("guest powered off")
	for _, want := range []error{nil, boom} {
		rec := &taskRecorder{}
		b := &build{opts: Options{Progress: rec}, r: &recipes.Recipe{Name: "web"}, log: slog.New(slog.DiscardHandler)}
		err := b.waitShown("waiting for SSH", func() error {
			if !slices.Equal(rec.events, []string{"begin web: waiting for SSH"}) {
				t.Errorf("while waiting, the reporter was told %v", rec.events)
			}
			time.Sleep(10 * time.Millisecond)
			return want
		})
		if err != want {
			t.Errorf("waitShown returned %v, want %v", err, want)
		}
		if wantEvents := []string{"begin web: waiting for SSH", fmt.Sprintf("done %v", want)}; !slices.Equal(rec.events, wantEvents) {
			t.Errorf("the reporter was told %v, want %v", rec.events, wantEvents)
		}
		if got := b.waits.within(time.Now().Add(-time.Minute), time.Now()); got < 10*time.Millisecond {
			t.Errorf("the wait counted %v of waiting, want ≥ 10ms", got)
		}
	}

	var logged bytes.Buffer
	b := &build{r: &recipes.Recipe{Name: "web"}, log: slog.New(slog.NewTextHandler(&logged, nil))}
	if err := b.waitShown("waiting for SSH", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logged.String(), `msg=finished name="web: waiting for SSH"`) {
		t.Errorf("with no reporter, the wait logged:\n%s", logged.String())
	}
}

// taskRecorder is a progress.Tasks that keeps what it was told about tasks.
type taskRecorder struct{ events []string }

func (r *taskRecorder) Start(string, int64) progress.Tracker { return progress.Nop().Start("", 0) }
func (r *taskRecorder) Begin(name string) progress.Task {
	r.events = append(r.events, "begin "+name)
	return r
}
func (r *taskRecorder) Done(err error) { r.events = append(r.events, fmt.Sprintf("done %v", err)) }
