package recipes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Defaults, documented in docs/recipes.md.
const (
	DefaultCPUs           = 2
	DefaultMemoryMiB      = 2048
	DefaultISODisk        = 16 * GiB // an installer needs a blank disk of some size
	DefaultFirmware       = "uefi"
	DefaultSSHUser        = "ingot"
	DefaultSSHTimeout     = 10 * time.Minute
	DefaultRebootTimeout  = 10 * time.Minute
	DefaultInstallTimeout = time.Hour
	DefaultBootWait       = 10 * time.Second
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Load reads and validates the recipe at path. vars holds --var values; env is the process
// environment (os.Environ()), searched for INGOT_VAR_NAME. A recipe that is not valid yields
// Errors. Relative paths in the recipe are resolved against its directory.
func Load(path string, vars map[string]string, env []string) (*Recipe, error) {
	data, err := readFile(path, "read recipe", dirError)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("read recipe %s: %w", path, err)
	}
	return LoadBytes(path, data, dir, vars, env)
}

// readFile reads a YAML file the user named (a recipe, a checks file). A directory yields
// Errors{dirErr(path)}, a file whose head is not text Errors with notText's error (the caller
// judges the whole text); doing prefixes I/O errors.
func readFile(path, doing string, dirErr func(string) *Error) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	if fi.IsDir() {
		return nil, Errors{dirErr(path)}
	}
	// The head is judged before the rest is read: a disk image named by mistake can be gigabytes,
	// and its first bytes are enough to say what it is.
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	head = head[:n]
	if e := notText(path, head, n < sniffLen); e != nil {
		return nil, Errors{e}
	}
	rest, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	return append(head, rest...), nil
}

// LoadBytes reads a recipe held in memory. name stands for the file in positions and becomes
// Recipe.File. dir resolves relative paths; empty means the recipe may not refer to local files
// by relative path (built-in recipes). A leading UTF-8 byte-order mark is ignored: editors on
// Windows write one, and YAML 1.2 (section 5.2) allows it.
func LoadBytes(name string, data []byte, dir string, vars map[string]string, env []string) (*Recipe, error) {
	if e := notText(name, data, true); e != nil {
		return nil, Errors{e}
	}
	// Columns on line 1 stay right without the mark: editors do not show it, and the parser
	// counts columns from the first byte it is given.
	data = bytes.TrimPrefix(data, []byte(utf8BOM))
	d := newDecoder(name, dir)
	r := d.decode(data, vars, env)
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return nil, d.errs
	}
	r.File, r.Dir, r.positions = name, dir, d.positions
	return r, nil
}

// newDecoder is a decoder for the file name, resolving relative paths against dir.
func newDecoder(name, dir string) *decoder {
	return &decoder{
		file:      name,
		dir:       dir,
		vars:      map[string]*variable{},
		anchors:   map[string]ast.Node{},
		positions: map[string]Pos{},
		open:      map[ast.Node]bool{},
	}
}

// checksDirError is the error for a directory named as a checks file.
func checksDirError(path string) *Error {
	return &Error{Pos: Pos{File: path}, Msg: "is a directory, not a checks file", Hint: "name the YAML file that holds tests:"}
}

// dirError is the error for a directory named as a recipe, naming the recipes in it to pick from.
func dirError(path string) *Error {
	var found []string
	entries, _ := os.ReadDir(path) // unreadable: the hint just names no files
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			found = append(found, filepath.Join(path, e.Name()))
		}
	}
	hint := "name the recipe file (a .yaml file); this directory has none"
	switch {
	case len(found) == 1:
		hint = "name the recipe file in it: " + found[0]
	case len(found) > 1:
		const listed = 5
		if len(found) > listed {
			found = append(found[:listed:listed], fmt.Sprintf("(and %d more)", len(found)-listed))
		}
		hint = "name one recipe file in it: " + strings.Join(found, ", ")
	}
	return &Error{Pos: Pos{File: path}, Msg: "is a directory, not a recipe file", Hint: hint}
}

// parse parses a recipe's text into its single document body, recording syntax errors.
func (d *decoder) parse(data []byte) ast.Node {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		pos, msg := Pos{File: d.file, Line: 1, Col: 1}, err.Error()
		hint := ""
		var ye yaml.Error
		if errors.As(err, &ye) {
			msg = ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				pos.Line, pos.Col = tk.Position.Line, tk.Position.Column
				if at, h, ok := d.misindented(msg, tk); ok {
					pos, hint = at, h
				}
			}
		}
		switch {
		case hint != "":
		case strings.Contains(msg, "tab") || strings.Contains(msg, "\t"):
			hint = "indent with spaces, not tabs"
		case strings.Contains(msg, "already defined"):
			hint = "each key may appear once in a mapping"
		case strings.Contains(msg, "must be specified") || strings.Contains(msg, "not found"):
			hint = "a bracket or quote opened before this point is not closed"
		case strings.HasPrefix(msg, "mapping value is not allowed in this context"):
			// One line: a ':' followed by a space inside a plain value.
			hint = `quote a value that contains ": ", e.g. shell: 'echo a: b'`
		case strings.Contains(msg, "value is not allowed in this context") || strings.Contains(msg, "non-map value is specified"):
			hint = "check this line's indentation: the keys of one mapping start in the same column, and list items (- ) in theirs"
		}
		msg = strings.ReplaceAll(msg, "\t", `\t`)
		d.errorf(pos, "", hint, "YAML: %s", msg)
		return nil
	}
	// Empty documents (a stray "---" and comments) are not recipes; they are ignored.
	var bodies []ast.Node
	for _, doc := range file.Docs {
		if doc.Body != nil {
			bodies = append(bodies, doc.Body)
		}
	}
	switch len(bodies) {
	case 0:
		if d.checksFile {
			d.errorf(Pos{File: d.file, Line: 1, Col: 1}, "", "list the checks under tests:; see docs/recipes.md", "the checks file is empty")
			return nil
		}
		d.errorf(Pos{File: d.file, Line: 1, Col: 1}, "", "a recipe needs at least name: and source:; see docs/recipes.md", "the recipe is empty")
		return nil
	case 1:
		return bodies[0]
	}
	if d.checksFile {
		d.errorf(d.at(bodies[1]), "", "put every check under one tests:", "a checks file is one YAML document; this file has %d", len(bodies))
		return nil
	}
	d.errorf(d.at(bodies[1]), "", "put each recipe in its own file", "a recipe is one YAML document; this file has %d", len(bodies))
	return nil
}

// misindented places and explains a syntax error that a line indented deeper than the key above
// it causes. YAML reads such a line as more of the value above (cpus: 2, then "   memory: 2G",
// is the plain scalar "2 memory"), so the parser reports the error at the start of that value,
// a line or more above the line to fix. The position returned is the start of the offending
// key; ok is false when tk is not such an error.
func (d *decoder) misindented(msg string, tk *token.Token) (at Pos, hint string, ok bool) {
	var key string // the key indented too deep
	switch {
	case strings.HasPrefix(msg, "mapping value is not allowed in this context"):
		// tk is the multi-line scalar that swallowed the key; the ':' after it is on the key's line.
		origin := strings.TrimLeft(tk.Origin, " \t\r\n")
		nl := strings.LastIndexByte(origin, '\n')
		if nl < 0 || tk.Next == nil || tk.Next.Type != token.MappingValueType || tk.Next.Position == nil {
			return Pos{}, "", false
		}
		last := origin[nl+1:]
		key = strings.TrimSpace(last)
		at = Pos{File: d.file, Line: tk.Next.Position.Line, Col: len(last) - len(strings.TrimLeft(last, " \t")) + 1}
	case strings.Contains(msg, "map key-value is pre-defined"):
		// A comment line ended the value above, so tk is the offending key itself.
		key = tk.Value
		at = Pos{File: d.file, Line: tk.Position.Line, Col: tk.Position.Column}
	default:
		return Pos{}, "", false
	}
	// The key above is the one before the nearest ':' on an earlier line.
	var above *token.Token
	for t := tk.Prev; t != nil; t = t.Prev {
		if t.Type == token.MappingValueType && t.Prev != nil && t.Prev.Position != nil && t.Prev.Position.Line < at.Line {
			above = t.Prev
			break
		}
	}
	if above == nil || above.Position.Column >= at.Col {
		return at, "check this line's indentation: the keys of one mapping start in the same column", true
	}
	return at, fmt.Sprintf("%q is indented deeper than %q on line %d (column %d, not %d), so YAML reads it as more of the value of %s; "+
		"start the keys of one mapping in the same column", key, above.Value, above.Position.Line, at.Col, above.Position.Column, above.Value), true
}

func (d *decoder) decode(data []byte, vars map[string]string, env []string) *Recipe {
	body := d.parse(data)
	if body == nil {
		return nil
	}
	d.collectAnchors(body, 0)
	if _, ok := d.resolve("", body).(*ast.MappingNode); !ok {
		d.errorf(d.at(body), "", "start with name: and source:; see docs/recipes.md", "a recipe is a mapping of keys, got %s", kindOf(body))
		return nil
	}
	top, ok := d.mapping("", d.at(body), body, false, yamlKeys[Recipe]())
	if !ok {
		return nil
	}
	r := &Recipe{Variables: map[string]string{}}
	d.variables(top, vars, env)
	for name, v := range d.vars {
		r.Variables[name] = v.value
	}

	if n, ok := top.get("name"); ok {
		if s, ok := d.nonEmpty("name", n); ok {
			r.Name = s
			if !nameRE.MatchString(s) || len(s) > 63 {
				d.errorf(d.at(n), "name", "use up to 63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit (it names ./out/NAME/)", "%q is not a valid name", s)
			}
		}
	} else {
		d.missing(top, "name", "add name: my-image (it names ./out/NAME/)")
	}
	if n, ok := top.get("description"); ok {
		r.Description, _ = d.str("description", n)
	}
	r.Source = d.source(top)
	r.Machine = d.machine(top, r.Source)
	r.CloudInit = d.cloudInit(top)
	r.SSH = d.ssh(top)
	r.Provision = d.provision(top)
	r.Generalize = d.generalize(top)
	r.Outputs = d.outputs(top)
	r.Test = d.test(top, r.Machine.Arch)
	r.Tests = d.checks(top)
	r.Drift = d.drift(top)
	r.Secrets = d.secrets(top)
	d.checkStepSecrets(r.Provision, r.SecretNames())
	r.SecretScan = d.secretScan(top, r.SecretNames())
	return r
}

// sub reads an optional sub-mapping of f; the bool is false when the key is absent or wrong.
func (d *decoder) sub(f *fields, key string, known []string) (*fields, bool) {
	n, ok := f.get(key)
	if !ok {
		return nil, false
	}
	p := f.child(key)
	return d.mapping(p, d.positions[p], n, true, known)
}

// localPath makes a recipe-relative path absolute.
func (d *decoder) localPath(s string) (string, string, string) {
	if filepath.IsAbs(s) {
		return filepath.Clean(s), "", ""
	}
	if d.dir == "" {
		return "", fmt.Sprintf("a built-in recipe cannot refer to the relative path %q", s), "use an absolute path or a URL"
	}
	return filepath.Join(d.dir, s), "", ""
}

// fmtDuration writes a duration as a recipe would: 10m, not 10m0s.
func fmtDuration(v time.Duration) string {
	s := v.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
