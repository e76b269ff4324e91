package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/drift"
	"github.com/ingot-build/ingot/manifest"
)

// diffBuild writes a build's manifest.json (and its inventory, when inv is not nil) into dir.
func diffBuild(t *testing.T, dir string, m *manifest.Manifest, inv []manifest.Entry) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if inv != nil {
		ref, err := manifest.WriteInventory(filepath.Join(dir, manifest.InventoryFile), inv)
		if err != nil {
			t.Fatal(err)
		}
		m.Inventory = &ref
	}
	if err := manifest.Write(filepath.Join(dir, "manifest.json"), m); err != nil {
		t.Fatal(err)
	}
	return dir
}

// diffBuilds writes three builds into a new directory: old, and new, which differs from old
// by one installed package, one setuid file and 50 MiB more under /opt; and bare, old without
// its inventory.
func diffBuilds(t *testing.T) (root string) {
	t.Helper()
	root = t.TempDir()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	pkgs := []manifest.Package{{Name: "bash", Version: "5.2.15-2+b2"}, {Name: "openssl", Version: "3.0.11-1~deb12u2"}}
	inv := []manifest.Entry{
		{Path: "/etc", Type: "dir", Mode: "0755", Size: 4096},
		{Path: "/etc/motd", Type: "file", Mode: "0644", Size: 10, SHA256: "aa"},
		{Path: "/opt", Type: "dir", Mode: "0755", Size: 4096},
		{Path: "/usr/bin/bash", Type: "file", Mode: "0755", Size: 1 << 20, SHA256: "bb"},
		{Path: "/var/log/syslog", Type: "file", Mode: "0640", Size: 0, SHA256: "e3"},
	}
	out := func(size int64) []manifest.File {
		return []manifest.File{{File: "web.qcow2", Format: "qcow2", Size: size, SHA256: "00"}}
	}
	diffBuild(t, filepath.Join(root, "old"), &manifest.Manifest{Name: "web", BuildID: "b1", Finished: at, Packages: pkgs, Outputs: out(300 << 20)}, inv)
	diffBuild(t, filepath.Join(root, "bare"), &manifest.Manifest{Name: "web", BuildID: "b0", Finished: at, Packages: pkgs, Outputs: out(300 << 20)}, nil)
	newPkgs := append([]manifest.Package{{Name: "nginx", Version: "1.22.1-9"}}, pkgs...)
	newInv := append([]manifest.Entry{
		{Path: "/opt/blob", Type: "file", Mode: "0644", Size: 50 << 20, SHA256: "cc"},
		{Path: "/usr/local/bin/rootme", Type: "file", Mode: "4755", Size: 100, SHA256: "dd"},
		{Path: "/var/log/nginx/access.log", Type: "file", Mode: "0640", Size: 0, SHA256: "e3"},
	}, inv...)
	diffBuild(t, filepath.Join(root, "new"), &manifest.Manifest{Name: "web", BuildID: "b2", Finished: at.Add(24 * time.Hour), Packages: newPkgs, Outputs: out(350 << 20)}, newInv)
	return root
}

func TestDiffExitCodes(t *testing.T) {
	root := diffBuilds(t)
	p := func(name string) string { return filepath.Join(root, name) }
	if err := os.WriteFile(p("truncated.json"), []byte(`{"schema_version": "1.2", "name": "we`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("newer.json"), []byte(`{"schema_version": "2.0", "name": "web"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string // regexps
		stderr []string // regexps; stderr must be empty when nil
	}{
		{"no threshold", []string{p("old"), p("new")}, 0,
			[]string{`(?m)^  added +nginx +1\.22\.1-9$`, `(?m)^  added +/usr/local/bin/rootme `, `(?m)^  /opt +\+50\.0 MiB`, `(?m)^same: no$`}, nil},
		{"the same build twice", []string{p("old"), p("old") + "/manifest.json", "--fail-on", "packages.changed>0", "--fail-on", "files.changed>0"}, 0,
			[]string{`(?m)^same: yes`}, nil},
		{"setuid crossed", []string{p("old"), p("new"), "--fail-on", "setuid.added>0"}, 1,
			[]string{`(?m)^setuid/setgid files added: 1$`},
			[]string{`(?m)^ingot: threshold crossed: setuid\.added>0: setuid\.added is 1, the limit 0$`}},
		{"two crossed, one not, flags first", []string{"--fail-on", "packages.changed>0", "--fail-on", "files.added>200", "--fail-on", "size.growth>5%", p("old"), p("new")}, 1,
			nil,
			[]string{`(?m)^ingot: threshold crossed: packages\.changed>0: packages\.changed is 1, the limit 0$`, `(?m)^ingot: threshold crossed: size\.growth>5%: size\.growth is [0-9.]+%, the limit 5%$`}},
		{"looser thresholds", []string{p("old"), p("new"), "--fail-on", "setuid.added>1", "--fail-on", "files.added>200", "--fail-on", "size.bytes>1GiB"}, 0, nil, nil},
		{"json", []string{"--json", p("old"), p("new")}, 0, []string{`"schema_version": "1\.0"`, `"setuid.added": 1`}, nil},
		{"format json", []string{"--format", "json", p("old"), p("new")}, 0, []string{`"schema_version": "1\.0"`}, nil},
		{"markdown", []string{"--format", "markdown", p("old"), p("new")}, 0, []string{`(?m)^### ingot diff$`, "\\| `setuid.added` \\| 1 \\|"}, nil},
		{"ignore", []string{"--ignore", "/opt/**", "--ignore", "/usr/local/**", p("old"), p("new"), "--fail-on", "files.added>0"}, 0, []string{`(?m)^files: 0 added, 0 removed, 0 changed; 5 paths left out as noise$`, `(?m)^setuid/setgid files added: 1$`}, nil},
		{"without inventory: packages still compare", []string{p("bare"), p("new"), "--fail-on", "packages.added>1"}, 0, []string{`(?m)^files: unavailable: .*bare has no file inventory$`}, nil},

		// exit 2: never 1 for an error
		{"a threshold on a metric without inventory", []string{p("bare"), p("new"), "--fail-on", "files.added>0"}, 2, nil,
			[]string{`threshold files\.added>0: metric unavailable: .*bare has no file inventory`}},
		{"a truncated manifest", []string{p("old"), p("truncated.json"), "--fail-on", "setuid.added>0"}, 2, nil, []string{`truncated\.json: not a manifest: not JSON`}},
		{"a newer major", []string{p("newer.json"), p("new")}, 2, nil, []string{`unsupported manifest schema_version 2\.0`}},
		{"a missing build", []string{p("old"), p("absent")}, 2, nil, []string{`absent: stat .*: no such file or directory`}},
		{"a stored image the store does not have", []string{"--store", p("store"), "image:web", p("new")}, 2, nil, []string{`image:web: no such image in the store: "web"`}},
		{"one argument", []string{p("old")}, 2, nil, []string{`name two builds to compare, A \(the baseline\) and B, got 1`}},
		{"three arguments", []string{p("old"), p("new"), p("bare")}, 2, nil, []string{`got 3`}},
		{"an unknown metric", []string{p("old"), p("new"), "--fail-on", "setuid.add>0"}, 2, nil, []string{`unknown metric "setuid\.add"; did you mean "setuid\.added"\?`}},
		{"a percentage on a count", []string{p("old"), p("new"), "--fail-on", "files.added>5%"}, 2, nil, []string{`files\.added is a count, not a percentage`}},
		{"a bad format", []string{"--format", "html", p("old"), p("new")}, 2, nil, []string{`--format "html": want one of text, json, markdown`}},
		{"json and another format", []string{"--json", "--format", "markdown", p("old"), p("new")}, 2, nil, []string{`--json and --format markdown disagree`}},
		{"a bad glob", []string{"--ignore", "/opt/[x", p("old"), p("new")}, 2, nil, []string{`--ignore: ignore pattern "/opt/\[x": not a valid glob`}},
		{"a relative glob", []string{"--ignore", "opt/**", p("old"), p("new")}, 2, nil, []string{`paths are absolute`}},
		{"an unknown flag", []string{"--fail", "x", p("old"), p("new")}, 2, nil, []string{`flag provided but not defined: -fail`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"ingot", "diff"}, tt.args...), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, re := range tt.stdout {
				if !regexp.MustCompile(re).MatchString(stdout.String()) {
					t.Errorf("stdout lacks %s:\n%s", re, stdout.String())
				}
			}
			if tt.stderr == nil && stderr.Len() > 0 {
				t.Errorf("stderr: %s", stderr.String())
			}
			for _, re := range tt.stderr {
				if !regexp.MustCompile(re).MatchString(stderr.String()) {
					t.Errorf("stderr lacks %s:\n%s", re, stderr.String())
				}
			}
			if tt.code == 2 && stdout.Len() > 0 {
				t.Errorf("an error printed a report:\n%s", stdout.String())
			}
		})
	}
}

// The JSON on stdout is the whole report, decodable as drift.Report, and names exactly the
// three differences between the builds.
func TestDiffJSONNamesTheChanges(t *testing.T) {
	root := diffBuilds(t)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"ingot", "diff", "--json", filepath.Join(root, "old"), filepath.Join(root, "new")}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var r drift.Report
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatal(err)
	}
	var added []string
	for _, e := range r.Files.Added {
		added = append(added, e.Path)
	}
	if len(r.Packages.Added) != 1 || r.Packages.Added[0].Name != "nginx" || r.Metrics["packages.changed"] != 1 ||
		strings.Join(added, " ") != "/opt/blob /usr/local/bin/rootme" || len(r.Files.Changed)+len(r.Files.Removed) != 0 ||
		len(r.Files.SetuidAdded) != 1 || r.Files.Dirs[0].Dir != "/opt" || r.Files.Dirs[0].Change != 50<<20 || r.Files.Ignored != 2 {
		t.Errorf("report: packages %+v, files %+v", r.Packages, r.Files)
	}
}

// Every `ingot diff` line of docs/drift.md, including those in CI snippets (where a line starts
// with "run:" or sits inside a shell condition, and quotes its thresholds), parses as its
// reader means it: the command runs, each flag is set, no flag is taken for an argument, and
// each threshold is one drift.ParseThreshold accepts. TestDocExamplesParse covers lines that
// start with `ingot`, and only those without shell quoting.
func TestDiffDocExamples(t *testing.T) {
	f, err := os.Open("../../docs/drift.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	inCode := false
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(s, "```") {
			inCode = !inCode
			continue
		}
		m := commandStart.FindStringIndex(s)
		if !inCode || m == nil {
			continue
		}
		i := m[1] - len("ingot diff ")
		n++
		where := fmt.Sprintf("docs/drift.md:%d", line)
		argv, err := quotedWords(s[i:])
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		app := newApp(new(bytes.Buffer), new(bytes.Buffer))
		var got *cli.Context
		parseOnly(app.Commands, &got)
		if err := runApp(context.Background(), app, argv); err != nil || got == nil {
			t.Errorf("%s: %q: %v", where, argv, err)
			continue
		}
		if got.NArg() != 2 {
			t.Errorf("%s: %q: %d positional arguments %q, want A and B", where, argv, got.NArg(), got.Args().Slice())
		}
		for _, a := range got.Args().Slice() {
			if strings.HasPrefix(a, "-") {
				t.Errorf("%s: flag %q read as an argument", where, a)
			}
		}
		for _, a := range argv[1:] {
			if name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "="); strings.HasPrefix(a, "-") && !got.IsSet(name) {
				t.Errorf("%s: flag %s is not set", where, a)
			}
		}
		if _, err := drift.ParseThresholds(got.StringSlice("fail-on")); err != nil {
			t.Errorf("%s: %v", where, err)
		}
		if err := (drift.Options{Ignore: got.StringSlice("ignore")}).Validate(); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
	if n < 3 {
		t.Errorf("docs/drift.md has %d `ingot diff` lines in code blocks: has its format changed?", n)
	}
}

// commandStart finds `ingot diff` where a shell line runs it: at the start, after a CI step's
// "run:", after "if", or in a command substitution (not in an echo's message).
var commandStart = regexp.MustCompile(`(?:^|run:\s+|\bif\s+|\$\()ingot diff `)

// quotedWords splits the `ingot diff …` part of a documented shell line: words and quoted
// words ('…' or "…"; a $VARIABLE stays as written, standing for a path), up to the end of the
// command (;, |, &, a closing parenthesis, or a comment or redirection starting a word).
// Anything else a shell would interpret is refused rather than misread: above all a > inside
// an unquoted word, which a shell takes for a redirection (--fail-on files.added>0 writes a
// file named 0).
func quotedWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.IndexByte(";|&)", c) >= 0 || strings.IndexByte("#<>", c) >= 0 && !inWord:
			if inWord {
				words = append(words, cur.String())
			}
			return words, nil
		case strings.IndexByte("\\`<>(", c) >= 0:
			return nil, fmt.Errorf("%q: shell syntax quotedWords cannot split", s)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%q: unclosed quote", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
