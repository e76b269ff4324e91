package bake

import (
	"testing"
	"time"
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
