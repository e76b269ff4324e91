package recipes

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	isuggest "github.com/ingot-build/ingot/internal/suggest"
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
// typo. Case-insensitive equality wins, then known aliases, then suggest.Closest.
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
	return isuggest.Closest(word, candidates)
}

// didYouMean is the hint for a word that is not one of the allowed ones.
func didYouMean(word string, allowed []string, what string) string {
	if s := suggest(word, allowed); s != "" {
		return fmt.Sprintf("did you mean %q?", s)
	}
	return what + ": " + strings.Join(allowed, ", ")
}
