package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
	"github.com/urfave/cli/v2"
)

func TestReorderFlags(t *testing.T) {
	flags := []cli.Flag{
		&cli.StringSliceFlag{Name: "var"},
		&cli.StringFlag{Name: "out"},
		&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}},
		&cli.BoolFlag{Name: "json"},
		&cli.BoolFlag{Name: "keep-on-failure"},
	}
	tests := []struct {
		name string
		args string
		want string
	}{
		{"nothing", "", ""},
		{"flags already first", "--out o a.yaml", "--out o a.yaml"},
		{"value flag after a positional takes its value along", "disk.qcow2 --out dist/", "--out dist/ disk.qcow2"},
		{"flag=value is one argument", "a.yaml --out=dist", "--out=dist a.yaml"},
		{"short alias with a value", "a.yaml -j 2 b.yaml", "-j 2 a.yaml b.yaml"},
		{"single dash long name", "a.yaml -out o", "-out o a.yaml"},
		{"bool flag takes no value", "a.yaml --keep-on-failure b.yaml", "--keep-on-failure a.yaml b.yaml"},
		{"bool flag last", "img --json", "--json img"},
		{"bool flag with =value", "img --json=false", "--json=false img"},
		{"repeated flag keeps its order", "a.yaml --var x=1 b.yaml --var y=2", "--var x=1 --var y=2 a.yaml b.yaml"},
		{"README build line", "--var version=1.2 -j 2 a.yaml b.yaml --out /srv/images", "--var version=1.2 -j 2 --out /srv/images a.yaml b.yaml"},
		{"-- ends the flags", "a.yaml --out o -- --var b.yaml", "--out o -- a.yaml --var b.yaml"},
		{"-- first", "-- --json", "-- --json"},
		{"-- last", "a.yaml --json --", "--json -- a.yaml"},
		{"a value is taken whatever it looks like, as by Go's flag", "a.yaml --out --json", "--out --json a.yaml"},
		{"- alone is positional", "- --json", "--json -"},
		{"unknown flag moves alone, for urfave to report", "a.yaml --frob b.yaml", "--frob a.yaml b.yaml"},
		{"value flag missing its value does not take a positional", "a.yaml --out", "--out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := reorderFlags(flags, strings.Fields(tt.args))
			if want := strings.Fields(tt.want); !slices.Equal(got, want) {
				t.Errorf("reorderFlags(%q) = %q, want %q", tt.args, got, want)
			}
		})
	}
}

func TestFlagsFirst(t *testing.T) {
	tests := []struct {
		args string
		want string
	}{
		{"ingot convert disk.qcow2 --to vmdk --out dist/", "ingot convert --to vmdk --out dist/ disk.qcow2"},
		{"ingot inspect img --json", "ingot inspect --json img"},
		{"ingot validate r.yaml --var x=1", "ingot validate --var x=1 r.yaml"},
		{"ingot build a.yaml --out /srv/images -j 2 --keep-on-failure b.yaml", "ingot build --out /srv/images -j 2 --keep-on-failure a.yaml b.yaml"},
		// subcommands: the flags after the subcommand's name are the subcommand's
		{"ingot images rm old --store s", "ingot images rm --store s old"},
		{"ingot recipes show debian-12", "ingot recipes show debian-12"},
		// no subcommand named: left to urfave's help and "no command" messages
		{"ingot", "ingot"},
		{"ingot --help", "ingot --help"},
		{"ingot help build", "ingot help build"},
		{"ingot frobnicate --json x", "ingot frobnicate --json x"},
		{"ingot images nope --store s", "ingot images nope --store s"},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			got := flagsFirst(newApp(io.Discard, io.Discard), strings.Fields(tt.args))
			if want := strings.Fields(tt.want); !slices.Equal(got, want) {
				t.Errorf("flagsFirst(%q) = %q, want %q", tt.args, got, want)
			}
		})
	}
}

// docExample is one `ingot …` command line in a code block of the README or docs/*.md.
type docExample struct {
	where string   // file:line
	text  string   // the command as written, without its comment
	argv  []string // its words
}

// docExamples reads every `ingot …` line in the fenced code blocks of README.md and docs/*.md.
func docExamples(t *testing.T) []docExample {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"../../README.md"}, files...)
	var out []docExample
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		inCode := false
		sc := bufio.NewScanner(bytes.NewReader(b))
		for line := 1; sc.Scan(); line++ {
			s := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(s, "```") {
				inCode = !inCode
				continue
			}
			s = strings.TrimPrefix(s, "$ ")
			if !inCode || !strings.HasPrefix(s, "ingot ") {
				continue
			}
			where := fmt.Sprintf("%s:%d", strings.TrimPrefix(f, "../../"), line)
			argv := shellWords(t, where, s)
			out = append(out, docExample{where: where, text: strings.Join(argv, " "), argv: argv})
			n++
		}
		if strings.HasSuffix(f, "README.md") && n == 0 {
			t.Fatalf("%s: no `ingot …` line found in a code block: has the README's format changed?", f)
		}
	}
	return out
}

// shellWords splits a documented command line as a shell would, for the plain lines our docs
// use; anything needing a real shell parser fails the test rather than being misread.
func shellWords(t *testing.T, where, line string) []string {
	t.Helper()
	var words []string
	for _, w := range strings.Fields(line) {
		if strings.HasPrefix(w, "#") {
			break
		}
		if strings.ContainsAny(w, "'\"\\`$|&;<>()") {
			t.Fatalf("%s: %q: shell syntax this test cannot split; extend shellWords", where, line)
		}
		words = append(words, w)
	}
	return words
}

// parseOnly replaces every command's action by one that keeps the context it was given, so that
// a command line is parsed exactly as for real but nothing is built, fetched or converted.
func parseOnly(cmds []*cli.Command, got **cli.Context) {
	for _, c := range cmds {
		if c.Action != nil {
			c.Action = func(c *cli.Context) error {
				*got = c
				return nil
			}
		}
		parseOnly(c.Subcommands, got)
	}
}

// Every command line in the README and docs parses as the reader means it: the command runs (no
// usage error, no missing required flag), every flag written is set, and no flag is left among
// the positional arguments, where a command would take it for a file or a name.
func TestDocExamplesParse(t *testing.T) {
	for _, ex := range docExamples(t) {
		t.Run(ex.text, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			app := newApp(&stdout, &stderr)
			var got *cli.Context
			parseOnly(app.Commands, &got)
			if err := runApp(context.Background(), app, ex.argv); err != nil {
				t.Fatalf("%s: %s: %v\n%s%s", ex.where, ex.text, err, stdout.String(), stderr.String())
			}
			if got == nil {
				t.Fatalf("%s: %s: ran no command\n%s", ex.where, ex.text, stdout.String())
			}
			for _, a := range got.Args().Slice() {
				if isFlag(a) {
					t.Errorf("%s: %s: flag %q was read as a positional argument (args %q)", ex.where, ex.text, a, got.Args().Slice())
				}
			}
			for _, a := range ex.argv[1:] {
				if name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "="); isFlag(a) && !got.IsSet(name) {
					t.Errorf("%s: %s: flag %s is not set", ex.where, ex.text, a)
				}
			}
		})
	}
}

// docsScript is the script that runs the docs' examples that need no guest, as written.
const docsScript = "testdata/script/docs.txtar"

// Every command docs.txtar runs is a command of the docs, word for word: when an example
// changes, the script must change with it.
func TestDocsScriptRunsDocExamples(t *testing.T) {
	documented := map[string]bool{}
	for _, ex := range docExamples(t) {
		documented[ex.text] = true
	}
	a, err := txtar.ParseFile(docsScript)
	if err != nil {
		t.Fatal(err)
	}
	execIngot := regexp.MustCompile(`^(?:!\s*)?exec (ingot .*)$`)
	n := 0
	for i, line := range strings.Split(string(a.Comment), "\n") {
		m := execIngot.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		n++
		if !documented[m[1]] {
			t.Errorf("%s:%d: %q is not an example in README.md or docs/*.md", docsScript, i+1, m[1])
		}
	}
	if n == 0 {
		t.Errorf("%s runs no ingot command", docsScript)
	}
}
