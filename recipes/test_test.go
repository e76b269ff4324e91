package recipes

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// test: and tests: as they decode, defaults included.
func TestLoadTestSections(t *testing.T) {
	const top = "name: t\nsource:\n  disk: { url: https://example.org/t.qcow2, sha256: " + emptySHA256 + " }\n"
	p := func(line, col int) Pos { return Pos{File: "r.yaml", Line: line, Col: col} }
	tests := []struct {
		name      string
		yaml      string // after top, which is three lines
		vars      map[string]string
		wantTest  Test
		wantTests []Check
	}{
		{
			name:     "absent: the defaults",
			wantTest: Test{Boot: TestBootFirst, Pos: p(1, 1)},
		},
		{
			name:     "empty test:",
			yaml:     "test:\ntests:\n",
			wantTest: Test{Boot: TestBootFirst, Pos: p(4, 1)},
		},
		{
			name:     "an empty list of checks",
			yaml:     "test: {}\ntests: []\n",
			wantTest: Test{Boot: TestBootFirst, Pos: p(4, 1)},
		},
		{
			name:     "every key, firmwares in the order written",
			yaml:     "test:\n  boot: all\n  firmware: [uefi-secure, bios, uefi]\n",
			wantTest: Test{Boot: TestBootAll, Firmware: []string{"uefi-secure", "bios", "uefi"}, Pos: p(4, 1)},
		},
		{
			name:     "boot none",
			yaml:     "test: { boot: none }\n",
			wantTest: Test{Boot: TestBootNone, Pos: p(4, 1)},
		},
		{
			name: "the brief's example",
			yaml: `test: { boot: first, firmware: [bios, uefi] }
tests:
  - { name: nginx-answers, run: "curl -fsS http://localhost/ | grep -q Welcome", timeout: 30s }
  - name: motd
    run: |
      grep -q ingot /etc/motd
    sudo: false
`,
			wantTest: Test{Boot: TestBootFirst, Firmware: []string{"bios", "uefi"}, Pos: p(4, 1)},
			wantTests: []Check{
				{Name: "nginx-answers", Run: "curl -fsS http://localhost/ | grep -q Welcome", Sudo: true, Timeout: 30 * time.Second, Pos: p(6, 5)},
				{Name: "motd", Run: "grep -q ingot /etc/motd\n", Sudo: false, Timeout: DefaultCheckTimeout, Pos: p(7, 5)},
			},
		},
		{
			name: "variables in every field",
			yaml: `variables: { boot: all, fw: bios, svc: nginx, sudo: "false", t: 2m }
test: { boot: "${var.boot}", firmware: ["${var.fw}"] }
tests:
  - { name: "${var.svc}-up", run: "systemctl is-active ${var.svc}", sudo: "${var.sudo}", timeout: "${var.t}" }
`,
			vars:      map[string]string{"svc": "caddy"},
			wantTest:  Test{Boot: TestBootAll, Firmware: []string{"bios"}, Pos: p(5, 1)},
			wantTests: []Check{{Name: "caddy-up", Run: "systemctl is-active caddy", Sudo: false, Timeout: 2 * time.Minute, Pos: p(7, 5)}},
		},
		{
			name: "anchors, and a literal $${",
			yaml: `tests:
  - &c { name: a, run: "echo $${HOME}" }
  - { name: b, run: "true", timeout: 1h }
`,
			wantTest: Test{Boot: TestBootFirst, Pos: p(1, 1)},
			wantTests: []Check{
				{Name: "a", Run: "echo ${HOME}", Sudo: true, Timeout: DefaultCheckTimeout, Pos: p(5, 8)}, // the mapping, after its anchor
				{Name: "b", Run: "true", Sudo: true, Timeout: time.Hour, Pos: p(6, 5)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := LoadBytes("r.yaml", []byte(top+tt.yaml), "", tt.vars, nil)
			if err != nil {
				t.Fatalf("%v\n%s", err, tt.yaml)
			}
			if !reflect.DeepEqual(r.Test, tt.wantTest) {
				t.Errorf("test = %+v, want %+v", r.Test, tt.wantTest)
			}
			if !reflect.DeepEqual(r.Tests, tt.wantTests) {
				t.Errorf("tests = %+v\nwant    %+v", r.Tests, tt.wantTests)
			}
		})
	}
}

// Every mistake in test: and tests: is reported at its place, with its field path and a hint.
// The corpus (testdata/broken/test*.yaml) holds the same cases in files; this table holds one
// mistake each.
func TestLoadTestSectionErrors(t *testing.T) {
	const top = "name: t\nsource:\n  disk: { url: https://example.org/t.qcow2, sha256: " + emptySHA256 + " }\n"
	tests := []struct {
		name string
		yaml string // after top: line 4 is its first
		want []string
	}{
		{"unknown boot", "test: { boot: frist }\n",
			[]string{`r.yaml:4:15: test.boot: "frist" is not allowed; did you mean "first"?`}},
		{"unknown boot, nothing close", "test: { boot: sometimes }\n",
			[]string{`r.yaml:4:15: test.boot: "sometimes" is not allowed; use one of: first, all, none`}},
		{"boot as a boolean", "test: { boot: false }\n",
			[]string{`r.yaml:4:15: test.boot: want one of first, all, none, got a boolean (false); write none to skip test boots, first or all to run them`}},
		{"unknown firmware", "test: { firmware: [bios, efi] }\n",
			[]string{`r.yaml:4:26: test.firmware[1]: "efi" is not allowed; did you mean "uefi"?`}},
		{"a firmware twice", "test:\n  firmware:\n    - uefi\n    - uefi\n",
			[]string{`r.yaml:7:7: test.firmware[1]: "uefi" is listed twice; each firmware is tested once; remove this one`}},
		{"no firmwares", "test: { firmware: [] }\n",
			[]string{`r.yaml:4:9: test.firmware: is empty; leave it out to test under machine.firmware, or list bios, uefi or uefi-secure`}},
		{"firmware not a list", "test: { firmware: uefi }\n",
			[]string{`r.yaml:4:19: test.firmware: want a list, got a string`}},
		{"a misspelt key of test", "test: { boots: all }\n",
			[]string{`r.yaml:4:9: test.boots: unknown key; did you mean "boot"?`}},
		{"test: as a list", "test:\n  - { name: a, run: \"true\" }\n",
			[]string{`r.yaml:5:3: test: want a mapping with boot, firmware, got a list; checks go under tests: (with an s); test: takes boot and firmware`}},
		{"test: as a string", "test: all\n",
			[]string{`r.yaml:4:7: test: want a mapping with boot, firmware, got a string`}},
		{"tests: as a mapping of test's keys", "tests: { boot: all }\n",
			[]string{`r.yaml:4:8: tests: want a list, got a mapping; boot and firmware go under test: (no s); tests: is a list of checks`}},
		{"tests: as another mapping", "tests:\n  web: curl localhost\n",
			[]string{`r.yaml:5:3: tests: want a list, got a mapping; write each check as a list item: - { name: NAME, run: COMMAND }`}},
		{"a duplicate name", "tests:\n  - { name: web, run: a }\n  - { name: web, run: b }\n",
			[]string{`r.yaml:6:13: tests[1].name: "web" is the name of another check; tests[0] (line 5) has it already; give each check its own name`}},
		{"a built-in's name", "tests:\n  - { name: fresh-identity, run: a }\n",
			[]string{`r.yaml:5:13: tests[0].name: "fresh-identity" is the name of a built-in check; the built-in checks (boots, cloud-init, fresh-identity, no-build-user, grown) run on every full test boot without being listed; give this check another name`}},
		{"a name that is no name", "tests:\n  - { name: Web Check!, run: a }\n",
			[]string{`r.yaml:5:13: tests[0].name: "Web Check!" is not a valid check name; use a-z, 0-9, '.', '_' and '-', starting with a letter or digit, e.g. "web-check"`}},
		{"a name with nothing to keep", "tests:\n  - { name: \"!!\", run: a }\n",
			[]string{`r.yaml:5:13: tests[0].name: "!!" is not a valid check name; use a-z, 0-9, '.', '_' and '-', starting with a letter or digit`}},
		{"an empty name", "tests:\n  - { name: \"\", run: a }\n",
			[]string{`r.yaml:5:13: tests[0].name: is empty`}},
		{"a number as the name", "tests:\n  - { name: 1, run: a }\n",
			[]string{`r.yaml:5:13: tests[0].name: want a string, got a number (1); quote it: "1"`}},
		{"no name", "tests:\n  - { run: a }\n",
			[]string{`r.yaml:5:5: tests[0].name: is missing; add name: NAME (a-z, 0-9, '.', '_', '-'); reports and errors name the check by it`}},
		{"no run", "tests:\n  - name: a\n",
			[]string{`r.yaml:5:5: tests[0].run: is missing; add run: COMMAND, a shell script that exits 0 when the check passes`}},
		{"an empty run", "tests:\n  - { name: a, run: \"\" }\n",
			[]string{`r.yaml:5:21: tests[0].run: is empty`}},
		{"a blank run", "tests:\n  - name: a\n    run: |\n\n",
			[]string{`r.yaml:6:10: tests[0].run: is empty`}},
		{"run as a list", "tests:\n  - { name: a, run: [a, b] }\n",
			[]string{`r.yaml:5:21: tests[0].run: want a string, got a list`}},
		{"a zero timeout", "tests:\n  - { name: a, run: a, timeout: 0s }\n",
			[]string{`r.yaml:5:33: tests[0].timeout: is zero; leave it out for the default of 5m`}},
		{"a negative timeout", "tests:\n  - { name: a, run: a, timeout: -5s }\n",
			[]string{`r.yaml:5:33: tests[0].timeout: "-5s" is negative`}},
		{"a timeout without a unit", "tests:\n  - { name: a, run: a, timeout: 30 }\n",
			[]string{`r.yaml:5:33: tests[0].timeout: 30 has no unit; add a unit: 30s or 30m`}},
		{"sudo as yes", "tests:\n  - { name: a, run: a, sudo: yes }\n",
			[]string{`r.yaml:5:30: tests[0].sudo: want true or false, got a string ("yes"); YAML 1.2 reads yes as a string; write true or false`}},
		{"command for run", "tests:\n  - { name: a, command: a }\n",
			[]string{`r.yaml:5:16: tests[0].command: unknown key; did you mean "run"?`}},
		{"a misspelt timeout", "tests:\n  - { name: a, run: a, timout: 1m }\n",
			[]string{`r.yaml:5:24: tests[0].timout: unknown key; did you mean "timeout"?`}},
		{"a string for a check", "tests:\n  - systemctl is-active nginx\n",
			[]string{`r.yaml:5:5: tests[0]: a check is a mapping with name and run, got a string; write - { name: NAME, run: "systemctl is-active nginx" }`}},
		{"checks: for tests:", "checks: []\n",
			[]string{`r.yaml:4:1: checks: unknown key; did you mean "tests"?`}},
		{"an undeclared variable", "tests:\n  - { name: a, run: \"test ${var.x}\" }\n",
			[]string{`r.yaml:5:21: tests[0].run: undeclared variable "x"; declare it under variables:`}},
		{"a bad boot from a variable", "variables: { b: most }\ntest: { boot: \"${var.b}\" }\n",
			[]string{`r.yaml:5:15: test.boot: "most" is not allowed; use one of: first, all, none`}},
		{"several mistakes, each reported", "test: { boot: x, firmware: [x] }\ntests:\n  - { name: boots, run: \"\", timeout: 0s }\n",
			[]string{
				`r.yaml:4:15: test.boot: "x" is not allowed; use one of: first, all, none`,
				`r.yaml:4:29: test.firmware[0]: "x" is not allowed; use one of: bios, uefi, uefi-secure`,
				`r.yaml:6:13: tests[0].name: "boots" is the name of a built-in check; the built-in checks (boots, cloud-init, fresh-identity, no-build-user, grown) run on every full test boot without being listed; give this check another name`,
				`r.yaml:6:25: tests[0].run: is empty`,
				`r.yaml:6:38: tests[0].timeout: is zero; leave it out for the default of 5m`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes("r.yaml", []byte(top+tt.yaml), "", nil, nil)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %v, want Errors\n%s", err, tt.yaml)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestBuiltinChecks(t *testing.T) {
	want := []string{"boots", "cloud-init", "fresh-identity", "no-build-user", "grown"}
	got := BuiltinChecks()
	if !slices.Equal(got, want) {
		t.Fatalf("BuiltinChecks() = %v, want %v", got, want)
	}
	got[0] = "changed"
	if BuiltinChecks()[0] != "boots" {
		t.Error("BuiltinChecks returns a slice its callers can change")
	}
	for _, name := range want {
		if !nameRE.MatchString(name) {
			t.Errorf("%q is not a well-formed check name", name)
		}
	}
}

// LoadChecks reads a file holding only tests:, with the errors a recipe's tests: gets, and its
// own for the rest of the file.
func TestLoadChecks(t *testing.T) {
	tests := []struct {
		name    string
		content string // nil: no file; "<dir>": a directory
		want    []Check
		errs    []string // with FILE for the file's path
	}{
		{
			name: "good",
			content: "# extra checks\ntests:\n  - { name: web, run: \"curl -fsS localhost\", timeout: 10s }\n" +
				"  - name: motd\n    run: |\n      grep -q ingot /etc/motd\n    sudo: false\n",
			want: []Check{
				{Name: "web", Run: "curl -fsS localhost", Sudo: true, Timeout: 10 * time.Second, Pos: Pos{Line: 3, Col: 5}},
				{Name: "motd", Run: "grep -q ingot /etc/motd\n", Sudo: false, Timeout: DefaultCheckTimeout, Pos: Pos{Line: 4, Col: 5}},
			},
		},
		{
			name:    "a byte-order mark",
			content: "\ufefftests: [ { name: a, run: \"true\" } ]\n",
			want:    []Check{{Name: "a", Run: "true", Sudo: true, Timeout: DefaultCheckTimeout, Pos: Pos{Line: 1, Col: 10}}},
		},
		{
			name:    "another top-level key",
			content: "name: web\ntests:\n  - { name: a, run: \"true\" }\n",
			errs:    []string{"FILE:1:1: name: unknown key; a checks file holds only tests:; the other keys belong in a recipe"},
		},
		{
			name:    "test: in a checks file",
			content: "test: { boot: all }\ntests:\n  - { name: a, run: \"true\" }\n",
			errs:    []string{"FILE:1:1: test: unknown key; test: (boot, firmware) belongs in a recipe; ingot test takes --firmware instead, and a checks file holds only tests:"},
		},
		{
			name:    "a misspelt tests:",
			content: "tets:\n  - { name: a, run: \"true\" }\n",
			errs:    []string{`FILE:1:1: tets: unknown key; did you mean "tests"?`},
		},
		{
			name:    "no tests:",
			content: "# nothing\n{}\n",
			errs:    []string{"FILE:2:1: tests: is missing; list the checks under tests:, as in a recipe"},
		},
		{
			name:    "no checks",
			content: "tests: []\n",
			errs:    []string{"FILE:1:1: tests: has no checks; list at least one check, or leave --tests out"},
		},
		{
			name:    "a check's mistakes",
			content: "tests:\n  - { name: a, run: \"true\" }\n  - { name: a, run: \"\", timeout: 0s }\n",
			errs: []string{
				`FILE:3:13: tests[1].name: "a" is the name of another check; tests[0] (line 2) has it already; give each check its own name`,
				"FILE:3:21: tests[1].run: is empty",
				"FILE:3:34: tests[1].timeout: is zero; leave it out for the default of 5m",
			},
		},
		{
			name:    "a variable",
			content: "tests:\n  - { name: a, run: \"test ${var.x} = 1\" }\n",
			errs:    []string{`FILE:2:21: tests[0].run: undeclared variable "x"; a checks file has no variables; write the value itself`},
		},
		{
			name:    "a list",
			content: "- { name: a, run: \"true\" }\n",
			errs:    []string{"FILE:1:1: a checks file is a mapping with tests:, got a list; start with tests: and a list of checks; see docs/recipes.md"},
		},
		{
			name:    "empty",
			content: "# nothing here\n",
			errs:    []string{"FILE:1:1: the checks file is empty; list the checks under tests:; see docs/recipes.md"},
		},
		{
			name:    "two documents",
			content: "tests: [ { name: a, run: \"true\" } ]\n---\ntests: [ { name: b, run: \"true\" } ]\n",
			errs:    []string{"FILE:3:1: a checks file is one YAML document; this file has 2; put every check under one tests:"},
		},
		{
			name:    "a syntax error",
			content: "tests:\n  - { name: a, run: \"true\"\n",
			errs:    []string{"FILE:2:5: YAML: "}, // the parser's words follow
		},
		{
			name:    "a disk image",
			content: "QFI\xfb\x00\x00\x00\x03",
			errs:    []string{"FILE:1:1: the checks file is not a text YAML file: it looks like a qcow2 disk image; name the checks file: YAML text with tests:"},
		},
		{
			name:    "a directory",
			content: "<dir>",
			errs:    []string{"FILE: is a directory, not a checks file; name the YAML file that holds tests:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "checks.yaml")
			if tt.content == "<dir>" {
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := LoadChecks(path)
			if tt.errs == nil {
				if err != nil {
					t.Fatal(err)
				}
				for i := range tt.want {
					tt.want[i].Pos.File = path
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("checks = %+v\nwant     %+v", got, tt.want)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %v (%T), want Errors", err, err)
			}
			if got != nil {
				t.Errorf("checks %+v returned with errors", got)
			}
			if len(es) != len(tt.errs) {
				t.Fatalf("%d errors, want %d:\n%v", len(es), len(tt.errs), err)
			}
			for i, e := range es {
				want := strings.ReplaceAll(tt.errs[i], "FILE", path)
				if got := e.Error(); got != want && !(strings.HasSuffix(want, "YAML: ") && strings.HasPrefix(got, want)) {
					t.Errorf("error %d:\n  %s\nwant\n  %s", i, got, want)
				}
			}
		})
	}

	t.Run("no such file", func(t *testing.T) {
		_, err := LoadChecks(filepath.Join(t.TempDir(), "missing.yaml"))
		var es Errors
		if err == nil || errors.As(err, &es) || !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "read checks: ") {
			t.Errorf("error %v, want a wrapped ErrNotExist", err)
		}
	})
}

// A recipe's tests: and a checks file's read the same text into the same checks.
func TestLoadChecksMatchesRecipe(t *testing.T) {
	section := "tests:\n  - { name: web, run: \"curl -fsS localhost\", timeout: 10s, sudo: false }\n  - name: b\n    run: |\n      true\n"
	path := filepath.Join(t.TempDir(), "checks.yaml")
	if err := os.WriteFile(path, []byte(section), 0o644); err != nil {
		t.Fatal(err)
	}
	fromFile, err := LoadChecks(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := LoadBytes("r.yaml", []byte(minimal+section), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromFile) != 2 || len(r.Tests) != 2 {
		t.Fatalf("%d and %d checks, want 2", len(fromFile), len(r.Tests))
	}
	for i := range fromFile {
		a, b := fromFile[i], r.Tests[i]
		a.Pos, b.Pos = Pos{}, Pos{}
		if a != b {
			t.Errorf("check %d: file %+v, recipe %+v", i, a, b)
		}
	}
}

// The recipe's form holds test and tests; leaving them out is the same as writing their
// defaults, and neither reaches a checkpoint's key.
func TestCanonicalTestSections(t *testing.T) {
	form := func(yaml string) (recipe, boot []byte) {
		t.Helper()
		r, err := LoadBytes("r.yaml", []byte(minimal+yaml), "", nil, nil)
		if err != nil {
			t.Fatalf("%v\n%s", err, yaml)
		}
		if recipe, err = r.Canonical(); err != nil {
			t.Fatal(err)
		}
		if boot, err = r.BootCanonical(); err != nil {
			t.Fatal(err)
		}
		return recipe, boot
	}
	base, baseBoot := form("")
	const want = `"test":{"boot":"first","firmware":[]},"tests":[]`
	if !bytes.Contains(base, []byte(want)) {
		t.Errorf("form %s does not hold %s", base, want)
	}
	if got, _ := form("test: { boot: first }\ntests: []\n"); !bytes.Equal(got, base) {
		t.Errorf("the defaults written out change the form:\n%s\n%s", got, base)
	}
	check := "tests:\n  - { name: web, run: \"curl -fsS localhost\", timeout: 30s }\n"
	withCheck, withCheckBoot := form(check)
	const wantCheck = `"tests":[{"name":"web","run":"curl -fsS localhost","sudo":true,"timeout":"30s"}]`
	if !bytes.Contains(withCheck, []byte(wantCheck)) {
		t.Errorf("form %s does not hold %s", withCheck, wantCheck)
	}
	if !bytes.Equal(withCheckBoot, baseBoot) {
		t.Error("a check changes BootCanonical")
	}
	for _, changed := range []string{
		strings.Replace(check, "localhost", "127.0.0.1", 1),
		strings.Replace(check, "30s", "31s", 1),
		strings.Replace(check, "web", "www", 1),
		strings.Replace(check, " }", ", sudo: false }", 1),
		check + "test: { boot: all }\n",
		check + "test: { firmware: [bios] }\n",
	} {
		got, gotBoot := form(changed)
		if bytes.Equal(got, withCheck) {
			t.Errorf("the form does not change with\n%s", changed)
		}
		if !bytes.Equal(gotBoot, baseBoot) {
			t.Errorf("BootCanonical changes with\n%s", changed)
		}
	}
}

// The schema lists the same built-in names, boot values and firmwares as the loader.
func TestSchemaTestSections(t *testing.T) {
	v := loadSchema(t)
	props := v.root["properties"].(map[string]any)
	enumOf := func(node any) []string {
		t.Helper()
		var out []string
		for _, alt := range node.(map[string]any)["anyOf"].([]any) {
			if e, ok := alt.(map[string]any)["enum"].([]any); ok {
				for _, x := range e {
					out = append(out, x.(string))
				}
			}
		}
		return out
	}
	test := props["test"].(map[string]any)["properties"].(map[string]any)
	if got := enumOf(test["boot"]); !slices.Equal(got, testBoots()) {
		t.Errorf("schema's test.boot = %v, want %v", got, testBoots())
	}
	if got := enumOf(test["firmware"].(map[string]any)["items"]); !slices.Equal(got, firmwareKinds()) {
		t.Errorf("schema's test.firmware = %v, want %v", got, firmwareKinds())
	}
	name := props["tests"].(map[string]any)["items"].(map[string]any)["properties"].(map[string]any)["name"].(map[string]any)
	var builtins []string
	for _, x := range name["not"].(map[string]any)["enum"].([]any) {
		builtins = append(builtins, x.(string))
	}
	if !slices.Equal(builtins, BuiltinChecks()) {
		t.Errorf("schema's built-in checks = %v, want %v", builtins, BuiltinChecks())
	}
}

// Words for a check's run, and for tests:, find them; in a shell step the same words still find
// inline.
func TestSuggestCheckKeys(t *testing.T) {
	check, shell := yamlKeys[Check](), yamlKeys[Shell]()
	tests := []struct {
		word  string
		known []string
		want  string
	}{
		{"command", check, "run"},
		{"cmd", check, "run"},
		{"script", check, "run"},
		{"inline", check, "run"},
		{"command", shell, "inline"},
		{"run", shell, "inline"},
		{"checks", yamlKeys[Recipe](), "tests"},
	}
	for _, tt := range tests {
		if got := suggest(tt.word, tt.known); got != tt.want {
			t.Errorf("suggest(%q, %v) = %q, want %q", tt.word, tt.known, got, tt.want)
		}
	}
}
