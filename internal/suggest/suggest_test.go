package suggest

import "testing"

func TestClosest(t *testing.T) {
	cands := []string{"memory", "machine", "packages.changed", "setuid.added", "cpus"}
	tests := []struct{ word, want string }{
		{"memroy", "memory"},           // a transposition counts once
		{"MEMORY", "memory"},           // case is ignored
		{"cpu", "cpus"},                // short words: one edit
		{"setuid.add", "setuid.added"}, // long words: up to three
		{"kernel", ""},                 // nothing close
		{"", ""},
	}
	for _, tt := range tests {
		if got := Closest(tt.word, cands); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
	for _, d := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "abc", 0}, {"abc", "acb", 1}, {"abc", "", 3},
		{"kitten", "sitting", 3}, {"sha265", "sha256", 1}, {"größe", "grösse", 2}} {
		if got := Distance(d.a, d.b); got != d.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", d.a, d.b, got, d.want)
		}
	}
}
