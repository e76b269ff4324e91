package recipes

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestSuggest(t *testing.T) {
	known := []string{"cpus", "memory", "disk", "firmware", "accel", "driver", "qemu_args"}
	tests := []struct {
		word, want string
	}{
		{"memroy", "memory"},  // transposition
		{"memory2", "memory"}, // insertion
		{"Memory", "memory"},  // case
		{"cpu", "cpus"},       // deletion
		{"ram", "memory"},     // alias
		{"firmare", "firmware"},
		{"qemuargs", "qemu_args"},
		{"gpu", ""}, // nothing close
		{"networking", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.word, known); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
}

func TestErrorsRendering(t *testing.T) {
	one := &Error{Pos: Pos{File: "r.yaml", Line: 12, Col: 5}, Path: "machine.memory", Msg: `"2 gigs" is not a size`, Hint: "use a number with a unit, e.g. 2GiB"}
	if got, want := one.Error(), `r.yaml:12:5: machine.memory: "2 gigs" is not a size; use a number with a unit, e.g. 2GiB`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	syntax := &Error{Pos: Pos{File: "r.yaml", Line: 3, Col: 1}, Msg: "YAML: bad"}
	if got, want := syntax.Error(), "r.yaml:3:1: YAML: bad"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}

	var many Errors
	for i := range MaxReported + 5 {
		many = append(many, &Error{Pos: Pos{File: "r.yaml", Line: i + 1, Col: 1}, Path: "x", Msg: fmt.Sprint("problem ", i)})
	}
	text := many.Error()
	if lines := strings.Split(text, "\n"); len(lines) != MaxReported+1 || lines[MaxReported] != "(and 5 more errors)" {
		t.Errorf("%d errors render as %d lines ending %q", len(many), len(lines), lines[len(lines)-1])
	}
	var target *Error
	if err := error(many); !errors.As(err, &target) || target != many[0] {
		t.Errorf("errors.As does not reach the first *Error")
	}
}

func TestSortErrorsByPosition(t *testing.T) {
	es := Errors{
		{Pos: Pos{Line: 9, Col: 1}, Msg: "c"},
		{Pos: Pos{Line: 2, Col: 7}, Msg: "b"},
		{Pos: Pos{Line: 2, Col: 3}, Msg: "a"},
		{Pos: Pos{Line: 9, Col: 1}, Msg: "d"}, // same place as c: discovery order kept
	}
	sortErrors(es)
	var got string
	for _, e := range es {
		got += e.Msg
	}
	if got != "abcd" {
		t.Errorf("sorted order %q, want abcd", got)
	}
}
