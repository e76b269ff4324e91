package recipes

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/broken/*.golden from the current messages")

// The corpus of broken recipes: each testdata/broken/NAME.yaml must fail to load with exactly the
// messages in NAME.golden (file:line:column, field path, message, hint), so a change to any
// message is a visible diff. After an intended change: go test ./recipes -run TestBrokenRecipes -update
//
// Files named builtin-*.yaml are loaded as built-in recipes are (no directory for relative paths).
func TestBrokenRecipes(t *testing.T) {
	files, err := filepath.Glob("testdata/broken/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("only %d broken recipes in testdata/broken", len(files))
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			var err error
			if strings.HasPrefix(name, "builtin-") {
				data, rerr := os.ReadFile(path)
				if rerr != nil {
					t.Fatal(rerr)
				}
				_, err = LoadBytes(path, data, "", nil, nil)
			} else {
				_, err = Load(path, nil, nil)
			}
			if err == nil {
				t.Fatal("loaded without an error")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, not Errors: %v", err, err)
			}
			checkPositions(t, path, es)

			got := err.Error() + "\n"
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("messages differ from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}

	// Every golden file belongs to a recipe: a renamed case must not leave a stale one behind.
	goldens, _ := filepath.Glob("testdata/broken/*.golden")
	for _, g := range goldens {
		if _, err := os.Stat(strings.TrimSuffix(g, ".golden") + ".yaml"); err != nil {
			t.Errorf("%s has no recipe", g)
		}
	}
}

// checkPositions holds each error to a real place in the file: a line that exists, a column
// within it, and a field path for anything but a YAML syntax error.
func checkPositions(t *testing.T, path string, es Errors) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for _, e := range es {
		if e.Pos.File != path || e.Pos.Line < 1 || e.Pos.Line > len(lines) {
			t.Errorf("%v: position outside the file", e)
			continue
		}
		if e.Pos.Col < 1 || e.Pos.Col > len([]rune(lines[e.Pos.Line-1]))+1 {
			t.Errorf("%v: column outside line %q", e, lines[e.Pos.Line-1])
		}
		if e.Path == "" && !strings.HasPrefix(e.Msg, "YAML: ") && !strings.Contains(e.Msg, "recipe") {
			t.Errorf("%v: no field path", e)
		}
	}
}
