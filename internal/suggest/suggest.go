// Package suggest finds the word a user probably meant: the one copy of the "did you mean"
// machinery that recipe errors and drift thresholds both use.
package suggest

import "strings"

// Closest returns the candidate closest to word, ignoring case, or "" when none is close enough
// to be a likely typo: an edit distance (Distance) within a budget that grows with the word's
// length (1, 2 past four letters, 3 past eight).
func Closest(word string, candidates []string) string {
	lw := strings.ToLower(word)
	budget := 1
	switch {
	case len(word) > 8:
		budget = 3
	case len(word) > 4:
		budget = 2
	}
	best, bestD := "", budget+1
	for _, c := range candidates {
		if d := Distance(lw, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// Distance is the optimal string alignment distance: insertions, deletions, substitutions and
// adjacent transpositions each cost one.
func Distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
