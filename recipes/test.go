package recipes

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// Test says how the outputs are test-booted before anything is published. Under TCG a full test
// boot costs about a minute, so the recipe chooses how many outputs pay it.
type Test struct {
	// Boot is which outputs get a full test boot: TestBootFirst (the default), TestBootAll or
	// TestBootNone. With TestBootFirst every other output gets a smoke boot, which only reaches
	// the kernel (proving its bootloader and disk format); with TestBootNone nothing boots.
	Boot string `yaml:"boot"`
	// Firmware lists the firmwares every test boot runs under, as machine.firmware names them
	// (bios, uefi, uefi-secure), in the order written; empty means the machine's own firmware.
	Firmware []string `yaml:"firmware"`
	// Pos is where test: is written; the recipe's top when it is absent.
	Pos Pos `yaml:"-"`
}

// Test.Boot values.
const (
	TestBootFirst = "first"
	TestBootAll   = "all"
	TestBootNone  = "none"
)

// Check is one entry of tests:: a shell script run over SSH in a test-booted guest, which passes
// when it exits 0.
type Check struct {
	// Name is unique within tests:, matches [a-z0-9][a-z0-9._-]*, and is none of BuiltinChecks:
	// reports and errors name a check by it.
	Name string `yaml:"name"`
	// Run is the script, run by sh -c; never empty.
	Run string `yaml:"run"`
	// Sudo runs it as root (the default, as for shell steps); false runs it as the test user.
	Sudo bool `yaml:"sudo"`
	// Timeout bounds it: DefaultCheckTimeout unless written; always more than zero.
	Timeout time.Duration `yaml:"timeout"`
	// Pos is where the check's list item starts.
	Pos Pos `yaml:"-"`
}

// DefaultCheckTimeout bounds a check that names no timeout: long enough for a service to settle
// under TCG, short enough that a hung check does not hold the build for long.
const DefaultCheckTimeout = 5 * time.Minute

// BuiltinChecks names the checks every full test boot runs, in the order it runs them. A recipe's
// check may not take one of these names, so a report's names are unambiguous.
func BuiltinChecks() []string {
	return []string{"boots", "cloud-init", "fresh-identity", "no-build-user", "grown"}
}

// testBoots lists Test.Boot's values.
func testBoots() []string { return []string{TestBootFirst, TestBootAll, TestBootNone} }

// test reads test:, a mapping with boot and firmware, both optional.
func (d *decoder) test(top *fields, arch string) Test {
	t := Test{Boot: TestBootFirst, Pos: top.at}
	n, ok := top.get("test")
	if !ok {
		return t
	}
	t.Pos = d.positions["test"]
	if r, isList := d.resolve("test", n).(*ast.SequenceNode); isList {
		d.errorf(d.at(r), "test", "checks go under tests: (with an s); test: takes boot and firmware", "want a mapping with boot, firmware, got a list")
		return t
	}
	f, ok := d.mapping("test", t.Pos, n, true, yamlKeys[Test]())
	if !ok {
		return t
	}
	if bn, ok := f.get("boot"); ok {
		p := f.child("boot")
		if b, isBool := d.resolve(p, bn).(*ast.BoolNode); isBool {
			d.errorf(d.at(b), p, "write none to skip test boots, first or all to run them", "want one of %s, got a boolean (%s)", strings.Join(testBoots(), ", "), b.GetToken().Value)
		} else if v, ok := d.enum(p, bn, testBoots()...); ok {
			t.Boot = v
		}
	}
	if fn, ok := f.get("firmware"); ok {
		p := f.child("firmware")
		items, ok := d.list(p, fn)
		if ok && len(items) == 0 {
			d.errorf(d.positions[p], p, "leave it out to test under machine.firmware, or list bios, uefi or uefi-secure", "is empty")
		}
		for i, item := range items {
			ip := fmt.Sprintf("%s[%d]", p, i)
			v, ok := d.enum(ip, item, firmwareKinds()...)
			if !ok {
				continue
			}
			if why := firmwareFor(arch, v); why != "" {
				d.errorf(d.at(d.resolve(ip, item)), ip, why, "%q cannot boot an %s machine", v, arch)
				continue
			}
			if slices.Contains(t.Firmware, v) {
				d.errorf(d.at(d.resolve(ip, item)), ip, "each firmware is tested once; remove this one", "%q is listed twice", v)
				continue
			}
			t.Firmware = append(t.Firmware, v)
		}
	}
	return t
}

// checks reads tests:, the list of checks; a check that is not valid is left out (and reported).
func (d *decoder) checks(top *fields) []Check {
	n, ok := top.get("tests")
	if !ok {
		return nil
	}
	if m, isMap := d.resolve("tests", n).(*ast.MappingNode); isMap {
		hint := "write each check as a list item: - { name: NAME, run: COMMAND }"
		for _, mv := range m.Values {
			if k := mv.Key.GetToken(); k != nil && (k.Value == "boot" || k.Value == "firmware") {
				hint = "boot and firmware go under test: (no s); tests: is a list of checks"
			}
		}
		d.errorf(d.at(m), "tests", hint, "want a list, got a mapping")
		return nil
	}
	items, _ := d.list("tests", n)
	if len(items) == 0 {
		return nil // as if absent: only the built-in checks run
	}
	out := make([]Check, 0, len(items))
	names := map[string]string{} // name → the path of the check that took it
	for i, item := range items {
		if c, ok := d.check(fmt.Sprintf("tests[%d]", i), item, names); ok {
			out = append(out, c)
		}
	}
	return out
}

// check decodes one check: a mapping with name and run, and optionally sudo and timeout.
func (d *decoder) check(p string, n ast.Node, names map[string]string) (Check, bool) {
	n = d.resolve(p, n)
	if n == nil {
		return Check{}, false
	}
	c := Check{Sudo: true, Timeout: DefaultCheckTimeout, Pos: d.at(n)}
	switch s := n.(type) {
	case *ast.StringNode, *ast.LiteralNode:
		text := s.GetToken().Value
		if l, ok := s.(*ast.LiteralNode); ok {
			text = l.Value.Value
		}
		d.errorf(d.at(n), p, fmt.Sprintf("write - { name: NAME, run: %q }", strings.TrimSpace(text)), "a check is a mapping with name and run, got a string")
		return c, false
	}
	f, ok := d.mapping(p, c.Pos, n, false, yamlKeys[Check]())
	if !ok {
		return c, false
	}
	ok = true
	if nn, has := f.get("name"); has {
		c.Name, ok = d.checkName(f.child("name"), nn, names)
	} else {
		d.missing(f, "name", "add name: NAME (a-z, 0-9, '.', '_', '-'); reports and errors name the check by it")
		ok = false
	}
	if rn, has := f.get("run"); has {
		var rok bool
		c.Run, rok = d.nonEmpty(f.child("run"), rn)
		ok = ok && rok
	} else {
		d.missing(f, "run", "add run: COMMAND, a shell script that exits 0 when the check passes")
		ok = false
	}
	if sn, has := f.get("sudo"); has {
		if v, sok := d.boolean(f.child("sudo"), sn); sok {
			c.Sudo = v
		}
	}
	d.timeout(f, "timeout", "the default of "+fmtDuration(DefaultCheckTimeout), &c.Timeout)
	return c, ok
}

// checkName reads a check's name, which must be well-formed, no built-in check's, and not taken
// by an earlier check (names maps each name taken to its check's path).
func (d *decoder) checkName(p string, n ast.Node, names map[string]string) (string, bool) {
	s, ok := d.nonEmpty(p, n)
	if !ok {
		return "", false
	}
	at := d.at(d.resolve(p, n))
	if !nameRE.MatchString(s) {
		hint := "use a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
		if slug := checkSlug(s); slug != "" {
			hint += fmt.Sprintf(", e.g. %q", slug)
		}
		d.errorf(at, p, hint, "%q is not a valid check name", s)
		return s, false
	}
	if slices.Contains(BuiltinChecks(), s) {
		d.errorf(at, p, "the built-in checks ("+strings.Join(BuiltinChecks(), ", ")+") run on every full test boot without being listed; give this check another name",
			"%q is the name of a built-in check", s)
		return s, false
	}
	check := strings.TrimSuffix(p, ".name")
	if first, taken := names[s]; taken {
		hint := "give each check its own name"
		if pos, ok := d.positions[first]; ok && pos.Line > 0 {
			hint = fmt.Sprintf("%s (line %d) has it already; give each check its own name", first, pos.Line)
		}
		d.errorf(at, p, hint, "%q is the name of another check", s)
		return s, false
	}
	names[s] = check
	return s, true
}

var slugJunk = regexp.MustCompile(`[^a-z0-9._-]+`)

// checkSlug is a well-formed name close to s ("Nginx Answers" → "nginx-answers"), or "".
func checkSlug(s string) string {
	slug := strings.Trim(slugJunk.ReplaceAllString(strings.ToLower(s), "-"), "-._")
	if !nameRE.MatchString(slug) {
		return ""
	}
	return slug
}

// LoadChecks reads a file of extra checks for `ingot test IMAGE --tests FILE`: a YAML mapping
// whose only key is tests:, written as a recipe's tests: is. A file that is not valid yields
// Errors, each with its file:line:column and field path, as Load's do. A checks file declares
// no variables, so ${var.NAME} in it is an error.
func LoadChecks(path string) ([]Check, error) {
	data, err := readFile(path, "read checks", checksDirError)
	var es Errors
	switch {
	case errors.As(err, &es):
		for _, e := range es {
			asChecksFile(e)
		}
		return nil, err
	case err != nil:
		return nil, err
	}
	if e := notText(path, data, true); e != nil {
		return nil, Errors{asChecksFile(e)}
	}
	d := newDecoder(path, "")
	d.checksFile = true
	checks := d.decodeChecks(bytes.TrimPrefix(data, []byte(utf8BOM)))
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return nil, d.errs
	}
	return checks, nil
}

// asChecksFile rewords notText's error, which speaks of a recipe, for a checks file.
func asChecksFile(e *Error) *Error {
	e.Msg = strings.Replace(e.Msg, "the recipe is", "the checks file is", 1)
	if e.Hint == imageHint || e.Hint == archiveHint || e.Hint == binaryHint {
		e.Hint = "name the checks file: YAML text with tests:"
	}
	return e
}

// decodeChecks reads a checks file's text.
func (d *decoder) decodeChecks(data []byte) []Check {
	body := d.parse(data)
	if body == nil {
		return nil
	}
	d.collectAnchors(body, 0)
	if _, ok := d.resolve("", body).(*ast.MappingNode); !ok {
		d.errorf(d.at(body), "", "start with tests: and a list of checks; see docs/recipes.md", "a checks file is a mapping with tests:, got %s", kindOf(body))
		return nil
	}
	reported := len(d.errs)
	top, ok := d.mapping("", d.at(body), body, false, []string{"tests"})
	if !ok {
		return nil
	}
	for _, e := range d.errs[reported:] {
		switch {
		case e.Msg != "unknown key":
		case e.Path == "test":
			e.Hint = "test: (boot, firmware) belongs in a recipe; ingot test takes --firmware instead, and a checks file holds only tests:"
		case !strings.HasPrefix(e.Hint, "did you mean"):
			e.Hint = "a checks file holds only tests:; the other keys belong in a recipe"
		}
	}
	if _, ok := top.get("tests"); !ok {
		d.missing(top, "tests", "list the checks under tests:, as in a recipe")
		return nil
	}
	reported = len(d.errs)
	checks := d.checks(top)
	for _, e := range d.errs[reported:] {
		if strings.HasPrefix(e.Msg, "undeclared variable") {
			e.Hint = "a checks file has no variables; write the value itself"
		}
	}
	if len(checks) == 0 && len(d.errs) == reported {
		d.errorf(d.positions["tests"], "tests", "list at least one check, or leave --tests out", "has no checks")
	}
	return checks
}
