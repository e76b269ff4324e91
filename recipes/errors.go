package recipes

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Pos is a place in a recipe: where a value was written.
type Pos struct {
	File string
	Line int // 1-based; 0 when unknown
	Col  int // 1-based
}

// String renders the position as compilers do, file:line:column, so editors can jump to it.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return p.File + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col)
}

// Error is one problem in a recipe.
type Error struct {
	Pos Pos
	// Path is the field path, e.g. "provision[2].shell.env"; empty for a YAML syntax error.
	Path string
	Msg  string
	// Hint says what to do about it; may be empty.
	Hint string
}

// Error renders "file:line:col: path: message; hint".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// MaxReported is how many errors Errors.Error renders; the rest are counted. A recipe with more
// problems than this is usually one mistake repeated, and a wall of text hides the first one.
const MaxReported = 20

// Errors is every problem found in one recipe, in file order. Load returns it (as an error) for
// any recipe that is not valid; errors.As finds it, and each element is an *Error.
type Errors []*Error

// Error renders one error a line, at most MaxReported of them.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i == MaxReported {
			fmt.Fprintf(&b, "\n(and %d more errors)", len(es)-MaxReported)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As reach each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors orders errors by position, keeping discovery order for equal positions.
func sortErrors(es Errors) {
	slices.SortStableFunc(es, func(a, b *Error) int {
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Col - b.Pos.Col
	})
}

// alias maps words people reach for (from Packer, lima, cloud consoles) to ingot's keys, for
// the suggestion in "unknown key" errors when spelling alone does not find it. A word may stand
// for different keys in different places; suggest takes the first that the place knows.
func alias(word string) []string {
	switch word {
	case "ram", "mem", "memory_mb":
		return []string{"memory"}
	case "cores", "vcpus", "cpu", "smp":
		return []string{"cpus"}
	case "disk_size", "size":
		return []string{"disk"}
	case "checksum", "digest", "iso_checksum":
		return []string{"sha256"}
	case "iso_url", "location":
		return []string{"url"}
	case "userdata", "user-data":
		return []string{"user_data"}
	case "network-config":
		return []string{"network_config"}
	case "provisioners", "provisioner", "steps":
		return []string{"provision"}
	case "output", "artifacts":
		return []string{"outputs"}
	case "command", "commands", "cmd":
		return []string{"inline", "run"} // a shell step's, a check's
	case "run":
		return []string{"inline"}
	case "inline", "script", "shell":
		return []string{"run"} // in a check, which has neither
	case "checks", "check":
		return []string{"tests"}
	case "source", "from":
		return []string{"src"}
	case "destination", "dest", "to":
		return []string{"dst"}
	case "boot_command":
		return []string{"boot_keys"}
	case "vars":
		return []string{"variables"}
	case "env_vars", "environment":
		return []string{"env"}
	}
	return nil
}

// suggest returns the candidate closest to word, or "" when none is close enough to be a likely
// typo. Case-insensitive equality wins, then known aliases, then the smallest edit distance
// (transpositions count once) within a budget that grows with the word's length.
func suggest(word string, candidates []string) string {
	lw := strings.ToLower(word)
	for _, c := range candidates {
		if strings.ToLower(c) == lw {
			return c
		}
	}
	for _, a := range alias(lw) {
		if slices.Contains(candidates, a) {
			return a
		}
	}
	budget := 1
	switch {
	case len(word) > 8:
		budget = 3
	case len(word) > 4:
		budget = 2
	}
	best, bestD := "", budget+1
	for _, c := range candidates {
		if d := editDistance(lw, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions, deletions, substitutions
// and adjacent transpositions each cost one.
func editDistance(a, b string) int {
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

// didYouMean is the hint for a word that is not one of the allowed ones.
func didYouMean(word string, allowed []string, what string) string {
	if s := suggest(word, allowed); s != "" {
		return fmt.Sprintf("did you mean %q?", s)
	}
	return what + ": " + strings.Join(allowed, ", ")
}
