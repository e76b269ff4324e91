package recipes

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// maxDepth bounds nesting in free-form values (user_data), so an alias that contains itself is an
// error rather than a stack overflow.
const maxDepth = 64

// maxNodes bounds how many values free-form data may expand to. Aliases are expanded, so a few
// lines of nested aliases can stand for billions of values ("billion laughs"); real cloud-init
// data has hundreds.
const maxNodes = 100_000

// decoder walks one recipe's AST. It collects errors instead of stopping at the first, so a user
// fixes a recipe in one round trip.
type decoder struct {
	file string
	// dir resolves relative paths; empty for built-in recipes, which cannot name local files.
	dir       string
	errs      Errors
	vars      map[string]*variable
	anchors   map[string]ast.Node
	positions map[string]Pos
	// nodes counts values decoded by value, against maxNodes.
	nodes int
	// open holds the collections value is inside, to catch an alias to one of them.
	open map[ast.Node]bool
	// checksFile is set when the file is a checks file (LoadChecks), not a recipe, so that
	// messages about the whole file call it what it is.
	checksFile bool
}

// errorf records an error at pos for the value at path.
func (d *decoder) errorf(pos Pos, path, hint, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: pos, Path: path, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// at is where a node was written. A block mapping's own token is the ':' after its first key;
// the key itself is where a reader looks. A literal block's text starts on the next line, so the
// '|' is used.
func (d *decoder) at(n ast.Node) Pos {
	var tk *token.Token
	switch v := n.(type) {
	case nil:
		return Pos{File: d.file}
	case *ast.MappingNode:
		if !v.IsFlowStyle && len(v.Values) > 0 {
			tk = v.Values[0].Key.GetToken()
		} else {
			tk = v.Start
		}
	case *ast.LiteralNode:
		tk = v.Start
	case *ast.DocumentNode:
		return d.at(v.Body)
	default:
		tk = n.GetToken()
	}
	if tk == nil || tk.Position == nil {
		return Pos{File: d.file}
	}
	return Pos{File: d.file, Line: tk.Position.Line, Col: tk.Position.Column}
}

// collectAnchors records every anchor in the document, so an alias resolves wherever the walk
// meets it (the decoder reads sections in its own order, not the file's).
func (d *decoder) collectAnchors(n ast.Node, depth int) {
	if n == nil || depth > maxDepth {
		return
	}
	switch v := n.(type) {
	case *ast.AnchorNode:
		if name := v.Name.GetToken().Value; name != "" {
			if _, dup := d.anchors[name]; !dup {
				d.anchors[name] = v.Value
			}
		}
		d.collectAnchors(v.Value, depth+1)
	case *ast.MappingNode:
		for _, mv := range v.Values {
			d.collectAnchors(mv.Value, depth+1)
		}
	case *ast.MappingValueNode:
		d.collectAnchors(v.Value, depth+1)
	case *ast.SequenceNode:
		for _, x := range v.Values {
			d.collectAnchors(x, depth+1)
		}
	case *ast.TagNode:
		d.collectAnchors(v.Value, depth+1)
	}
}

// resolve follows anchors and aliases to the node that holds the value. It returns nil (and has
// reported why) for an alias to an unknown anchor.
func (d *decoder) resolve(path string, n ast.Node) ast.Node {
	for range maxDepth {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			name := v.Value.GetToken().Value
			target, ok := d.anchors[name]
			if !ok {
				d.errorf(d.at(v), path, "define it with &"+name+" before using *"+name, "alias *%s names no anchor", name)
				return nil
			}
			n = target
		default:
			return n
		}
	}
	d.errorf(d.at(n), path, "", "aliases nested too deeply")
	return nil
}

// kindOf names a node's type the way the errors speak about values.
func kindOf(n ast.Node) string {
	switch v := n.(type) {
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.NullNode, nil:
		return "empty"
	case *ast.TagNode:
		return kindOf(v.Value)
	}
	return "a " + n.Type().String()
}

// scalar is a resolved scalar value.
type scalar struct {
	// kind is "string", "number", "boolean" or "null"; "invalid" when an error has been
	// recorded for it already.
	kind string
	// text is the value of a string, and the text as written for anything else (0644 stays
	// "0644" rather than becoming 420).
	text string
	node ast.Node
}

// scalarOf reads a scalar node. It reports false, without recording an error, for a mapping or a
// list, so the caller can say what it wanted instead. An explicit !!str tag makes any scalar a
// string; other tags are refused.
func (d *decoder) scalarOf(path string, n ast.Node) (scalar, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return scalar{kind: "string", text: v.Value, node: n}, true
	case *ast.LiteralNode:
		return scalar{kind: "string", text: v.Value.Value, node: n}, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return scalar{kind: "number", text: n.GetToken().Value, node: n}, true
	case *ast.BoolNode:
		return scalar{kind: "boolean", text: n.GetToken().Value, node: n}, true
	case *ast.NullNode:
		return scalar{kind: "null", node: n}, true
	case *ast.TagNode:
		if v.Start.Value != "!!str" {
			d.errorf(d.at(n), path, "write the value without a tag (only !!str is supported)", "YAML tag %s is not supported", v.Start.Value)
			return scalar{kind: "invalid", node: n}, true
		}
		inner := d.resolve(path, v.Value)
		if s, ok := d.scalarOf(path, inner); ok {
			if s.kind == "null" {
				s.text = ""
			}
			s.kind = "string"
			s.node = n
			return s, true
		}
		return scalar{}, false
	}
	return scalar{}, false
}

// str reads a string, with variables substituted. ok is false when the value is wrong (an error
// has been recorded) or depends on a variable without a value (reported where it is declared).
func (d *decoder) str(path string, n ast.Node) (string, bool) {
	n = d.resolve(path, n)
	if n == nil {
		return "", false
	}
	s, ok := d.scalarOf(path, n)
	switch {
	case !ok:
		d.errorf(d.at(n), path, "", "want a string, got %s", kindOf(n))
		return "", false
	case s.kind == "invalid":
		return "", false
	case s.kind == "string":
		return d.expand(path, d.at(n), s.text)
	case s.kind == "null":
		d.errorf(d.at(n), path, "", "is empty; want a string")
		return "", false
	default:
		d.errorf(d.at(n), path, fmt.Sprintf("quote it: %q", s.text), "want a string, got %s (%s)", kindOf(n), s.text)
		return "", false
	}
}

// nonEmpty reads a string that must not be empty.
func (d *decoder) nonEmpty(path string, n ast.Node) (string, bool) {
	s, ok := d.str(path, n)
	if ok && strings.TrimSpace(s) == "" {
		d.errorf(d.at(n), path, "", "is empty")
		return "", false
	}
	return s, ok
}

// text reads any scalar as text, taking numbers and booleans as written: environment values and
// variable defaults are strings by nature, and `LEVEL: 2` should not need quotes.
func (d *decoder) text(path string, n ast.Node) (string, bool) {
	n = d.resolve(path, n)
	if n == nil {
		return "", false
	}
	s, ok := d.scalarOf(path, n)
	if !ok {
		d.errorf(d.at(n), path, "", "want a string, got %s", kindOf(n))
		return "", false
	}
	if s.kind == "invalid" {
		return "", false
	}
	if s.kind == "null" {
		d.errorf(d.at(n), path, `write "" for an empty string`, "is empty; want a string")
		return "", false
	}
	if s.kind == "string" {
		return d.expand(path, d.at(n), s.text)
	}
	return s.text, true
}

// viaVariable reads a scalar that is not a YAML string by type but may come from a variable:
// `cpus: ${var.cpus}` is a string in YAML that becomes a number once substituted. A plain quoted
// string is still a type error, so `cpus: "2"` is refused like any other mistyped value.
func (d *decoder) viaVariable(path string, n ast.Node, want string) (s scalar, text string, ok bool) {
	n = d.resolve(path, n)
	if n == nil {
		return scalar{}, "", false
	}
	s, isScalar := d.scalarOf(path, n)
	if !isScalar {
		d.errorf(d.at(n), path, "", "want %s, got %s", want, kindOf(n))
		return s, "", false
	}
	if s.kind == "invalid" {
		return s, "", false
	}
	if s.kind == "string" && strings.Contains(s.text, "${var.") {
		text, ok := d.expand(path, d.at(n), s.text)
		return s, text, ok
	}
	return s, s.text, true
}

// withUnit reads the text of what (a duration, a size) written as a string with a unit, e.g.
// example. A bare number is refused with the hint noUnit, a format with the number as %[1]s.
func (d *decoder) withUnit(path string, n ast.Node, what, example, noUnit string) (s scalar, text string, ok bool) {
	s, text, ok = d.viaVariable(path, n, what)
	if !ok {
		return s, "", false
	}
	switch s.kind {
	case "number":
		d.errorf(d.at(s.node), path, fmt.Sprintf(noUnit, text), "%s has no unit", text)
		return s, "", false
	case "string":
		return s, text, true
	default:
		d.errorf(d.at(s.node), path, "", "want %s such as %s, got %s", what, example, kindOf(s.node))
		return s, "", false
	}
}

// integer reads a whole number within [lo, hi].
func (d *decoder) integer(path string, n ast.Node, lo, hi int64) (int64, bool) {
	s, text, ok := d.viaVariable(path, n, "a whole number")
	if !ok {
		return 0, false
	}
	var v int64
	switch node := s.node.(type) {
	case *ast.IntegerNode:
		i, isInt := node.Value.(int64)
		if u, isUint := node.Value.(uint64); isUint && u <= math.MaxInt64 {
			i, isInt = int64(u), true
		}
		if !isInt {
			d.errorf(d.at(s.node), path, fmt.Sprintf("use a value from %d to %d", lo, hi), "%s is out of range", text)
			return 0, false
		}
		v = i
	default:
		if s.kind != "string" || !strings.Contains(s.text, "${var.") {
			hint := ""
			if _, err := strconv.ParseInt(s.text, 10, 64); err == nil && s.kind == "string" {
				hint = "remove the quotes"
			}
			d.errorf(d.at(s.node), path, hint, "want a whole number, got %s (%s)", kindOf(s.node), quoteString(s))
			return 0, false
		}
		i, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if err != nil {
			d.errorf(d.at(s.node), path, "", "%q (from %s) is not a whole number", text, s.text)
			return 0, false
		}
		v = i
	}
	if v < lo || v > hi {
		d.errorf(d.at(s.node), path, fmt.Sprintf("use a value from %d to %d", lo, hi), "%d is out of range", v)
		return 0, false
	}
	return v, true
}

// boolean reads true or false.
func (d *decoder) boolean(path string, n ast.Node) (bool, bool) {
	s, text, ok := d.viaVariable(path, n, "true or false")
	if !ok {
		return false, false
	}
	if s.kind == "boolean" || strings.Contains(s.text, "${var.") {
		switch text {
		case "true", "True", "TRUE":
			return true, true
		case "false", "False", "FALSE":
			return false, true
		}
	}
	if s.kind == "null" {
		d.errorf(d.at(s.node), path, "", "is empty; want true or false")
		return false, false
	}
	hint := ""
	if s.kind == "string" && slices.Contains([]string{"yes", "no", "on", "off", "y", "n"}, strings.ToLower(s.text)) {
		hint = "YAML 1.2 reads " + s.text + " as a string; write true or false"
	}
	d.errorf(d.at(s.node), path, hint, "want true or false, got %s (%s)", kindOf(s.node), quoteString(s))
	return false, false
}

// duration reads a Go duration with a unit: 90s, 10m, 1h30m. Bare numbers are refused: 30 could
// be seconds or minutes.
func (d *decoder) duration(path string, n ast.Node) (time.Duration, bool) {
	s, text, ok := d.withUnit(path, n, "a duration", "10m", "add a unit: %[1]ss or %[1]sm")
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(strings.TrimSpace(text))
	if err != nil {
		d.errorf(d.at(s.node), path, "use a number with a unit, e.g. 90s, 10m or 1h30m", "%q is not a duration", text)
		return 0, false
	}
	if v < 0 {
		d.errorf(d.at(s.node), path, "", "%q is negative", text)
		return 0, false
	}
	return v, true
}

// timeout reads the optional duration at key of f into *dst, which holds its default. Zero is
// refused: a timeout of nothing is a slip, and leaving the key out gives without (the default,
// or no timeout).
func (d *decoder) timeout(f *fields, key, without string, dst *time.Duration) {
	n, ok := f.get(key)
	if !ok {
		return
	}
	v, ok := d.duration(f.child(key), n)
	switch {
	case !ok:
	case v == 0:
		d.errorf(d.at(n), f.child(key), "leave it out for "+without, "is zero")
	default:
		*dst = v
	}
}

// size reads a size in bytes within [lo, hi] and a multiple of align.
func (d *decoder) size(path string, n ast.Node, lo, hi, align int64, example string) (int64, bool) {
	s, text, ok := d.withUnit(path, n, "a size", example, "write %[1]sMiB or %[1]sGiB, say; a bare number is ambiguous")
	if !ok {
		return 0, false
	}
	v, msg, hint := parseSize(text)
	if msg != "" {
		d.errorf(d.at(s.node), path, strings.Replace(hint, "e.g. 2GiB", "e.g. "+example, 1), "%s", msg)
		return 0, false
	}
	switch {
	case v < lo:
		d.errorf(d.at(s.node), path, "the smallest is "+FormatSize(lo), "%s is too small", text)
		return 0, false
	case v > hi:
		d.errorf(d.at(s.node), path, "the largest is "+FormatSize(hi), "%s is too large", text)
		return 0, false
	case v%align != 0:
		unit := strings.TrimPrefix(FormatSize(align), "1")
		d.errorf(d.at(s.node), path, fmt.Sprintf("round it to whole %s, e.g. %s", unit, FormatSize((v/align+1)*align)), "%s is not a whole number of %s", text, unit)
		return 0, false
	}
	return v, true
}

// enum reads one of a fixed set of words.
func (d *decoder) enum(path string, n ast.Node, allowed ...string) (string, bool) {
	v, ok := d.str(path, n)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, v) {
		d.errorf(d.at(d.resolve(path, n)), path, didYouMean(v, allowed, "use one of"), "%q is not allowed", v)
		return "", false
	}
	return v, true
}

// list reads a sequence; null is an empty list.
func (d *decoder) list(path string, n ast.Node) ([]ast.Node, bool) {
	n = d.resolve(path, n)
	switch v := n.(type) {
	case nil:
		return nil, false
	case *ast.NullNode:
		return nil, true
	case *ast.SequenceNode:
		for i, x := range v.Values {
			d.positions[fmt.Sprintf("%s[%d]", path, i)] = d.at(x)
		}
		return v.Values, true
	}
	d.errorf(d.at(n), path, "", "want a list, got %s", kindOf(n))
	return nil, false
}

// strings reads a list of strings.
func (d *decoder) strings(path string, n ast.Node) ([]string, bool) {
	items, ok := d.list(path, n)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for i, x := range items {
		s, ok1 := d.str(fmt.Sprintf("%s[%d]", path, i), x)
		ok = ok && ok1
		out = append(out, s)
	}
	return out, ok
}

// fields is a decoded mapping with known keys.
type fields struct {
	path string
	// at is where the mapping is named (its key, or its list item), for "missing" errors.
	at   Pos
	vals map[string]ast.Node
	// raw counts the keys written, known or not.
	raw int
	// suggested holds known keys that an unknown key's "did you mean" named, so a misspelt
	// required key is not also reported as missing.
	suggested map[string]bool
}

// missing reports a required key that is absent, unless a misspelling of it was reported.
func (d *decoder) missing(f *fields, key, hint string) {
	if !f.suggested[key] {
		d.errorf(f.at, f.child(key), hint, "is missing")
	}
}

// child is the field path of one of the mapping's keys.
func (f *fields) child(key string) string { return join(f.path, key) }

// get returns a key's value node.
func (f *fields) get(key string) (ast.Node, bool) {
	n, ok := f.vals[key]
	return n, ok
}

// mapping reads a mapping whose keys must be among known; unknown keys are errors that suggest
// the nearest known key. null is an empty mapping when nullOK.
func (d *decoder) mapping(path string, at Pos, n ast.Node, nullOK bool, known []string) (*fields, bool) {
	n = d.resolve(path, n)
	if n == nil {
		return nil, false
	}
	f := &fields{path: path, at: at, vals: map[string]ast.Node{}, suggested: map[string]bool{}}
	if _, isNull := n.(*ast.NullNode); isNull && nullOK {
		return f, true
	}
	m, ok := n.(*ast.MappingNode)
	if !ok {
		what := "a mapping"
		if len(known) > 0 {
			what = "a mapping with " + strings.Join(known, ", ")
		}
		d.errorf(d.at(n), path, "", "want %s, got %s", what, kindOf(n))
		return nil, false
	}
	f.raw = len(m.Values)
	for _, mv := range m.Values {
		key, keyNode, _, ok := d.key(path, mv)
		if !ok {
			continue
		}
		if !slices.Contains(known, key) {
			hint := didYouMean(key, known, "known keys are")
			if len(known) == 0 {
				hint = path[strings.LastIndexByte(path, '.')+1:] + " takes no options"
			}
			if s := suggest(key, known); s != "" {
				f.suggested[s] = true
			}
			d.errorf(d.at(keyNode), join(path, key), hint, "unknown key")
			continue
		}
		f.vals[key] = mv.Value
		d.positions[join(path, key)] = d.at(keyNode)
	}
	return f, true
}

// key reads a mapping key and says whether it is a YAML string (1: x has a number as its key).
// Merge keys (<<) are refused: they would make a recipe's meaning depend on merge rules that
// differ between YAML libraries.
func (d *decoder) key(path string, mv *ast.MappingValueNode) (text string, node ast.Node, isString, ok bool) {
	var k ast.Node = mv.Key
	if mk, isKey := k.(*ast.MappingKeyNode); isKey {
		k = mk.Value
	}
	if _, merge := k.(*ast.MergeKeyNode); merge {
		d.errorf(d.at(k), path, "write the keys out; anchors and aliases work for whole values", "merge keys (<<) are not supported")
		return "", nil, false, false
	}
	s, isScalar := d.scalarOf(path, d.resolve(path, k))
	if !isScalar || s.kind == "null" {
		d.errorf(d.at(k), path, "", "a key must be a string, not %s", kindOf(k))
		return "", nil, false, false
	}
	return s.text, k, s.kind == "string", true
}

// value decodes free-form YAML (user_data, network_config) into plain Go values, substituting
// variables in strings. Mapping keys must be strings; numbers keep their YAML type.
func (d *decoder) value(path string, n ast.Node, depth int) (any, bool) {
	if depth > maxDepth {
		d.errorf(d.at(n), path, "", "nested deeper than %d levels", maxDepth)
		return nil, false
	}
	if d.nodes++; d.nodes == maxNodes {
		d.errorf(d.at(n), path, "aliases are expanded where they are used; nest them less", "expands to more than %d values", maxNodes)
	}
	if d.nodes >= maxNodes {
		return nil, false
	}
	orig := n
	n = d.resolve(path, n)
	switch n.(type) {
	case *ast.MappingNode, *ast.SequenceNode:
		if d.open[n] {
			name := "an alias"
			if a, ok := orig.(*ast.AliasNode); ok {
				name = "alias *" + a.Value.GetToken().Value
			}
			d.errorf(d.at(orig), path, "", "%s refers to a value that contains it", name)
			return nil, false
		}
		d.open[n] = true
		defer delete(d.open, n)
	}
	switch v := n.(type) {
	case nil:
		return nil, false
	case *ast.MappingNode:
		out := make(map[string]any, len(v.Values))
		ok := true
		for _, mv := range v.Values {
			key, keyNode, isString, kok := d.key(path, mv)
			if !kok {
				ok = false
				continue
			}
			if !isString {
				d.errorf(d.at(keyNode), join(path, key), fmt.Sprintf("quote it: %q", key), "a key must be a string, not %s", kindOf(keyNode))
				ok = false
				continue
			}
			d.positions[join(path, key)] = d.at(keyNode)
			x, vok := d.value(join(path, key), mv.Value, depth+1)
			ok = ok && vok
			out[key] = x
		}
		return out, ok
	case *ast.SequenceNode:
		out := make([]any, 0, len(v.Values))
		ok := true
		for i, x := range v.Values {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.positions[p] = d.at(x)
			y, vok := d.value(p, x, depth+1)
			ok = ok && vok
			out = append(out, y)
		}
		return out, ok
	case *ast.IntegerNode:
		switch i := v.Value.(type) {
		case int64:
			return i, true
		case uint64:
			if i <= math.MaxInt64 {
				return int64(i), true
			}
			return i, true
		}
		return v.GetToken().Value, true
	case *ast.FloatNode:
		return v.Value, true
	case *ast.InfinityNode:
		return v.Value, true
	case *ast.NanNode:
		return math.NaN(), true
	case *ast.BoolNode:
		return v.Value, true
	case *ast.NullNode:
		return nil, true
	}
	s, ok := d.scalarOf(path, n)
	switch {
	case !ok:
		d.errorf(d.at(n), path, "", "%s is not supported here", kindOf(n))
		return nil, false
	case s.kind == "invalid":
		return nil, false
	case s.kind == "null":
		return nil, true
	}
	return d.expand(path, d.at(n), s.text)
}

// quoteString renders a scalar for a message: strings quoted, other values as written.
func quoteString(s scalar) string {
	if s.kind == "string" {
		return strconv.Quote(s.text)
	}
	return s.text
}

// join appends a key to a field path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlKeys lists the YAML keys of a recipe type, from its yaml tags: the decoder's known keys
// cannot drift from the types (and a test holds the types and the JSON Schema together).
func yamlKeys[T any]() []string {
	t := reflect.TypeFor[T]()
	var keys []string
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		keys = append(keys, tag)
	}
	return keys
}
