package recipes

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// EnvPrefix prefixes a variable's name in the environment: INGOT_VAR_version sets ${var.version}.
const EnvPrefix = "INGOT_VAR_"

var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// variable is one declared variable and the value it resolved to.
type variable struct {
	value string
	// set is false for a variable with no default that nobody supplied.
	set bool
}

// variables reads the recipe's declarations and resolves each one: --var wins over the
// environment, which wins over the recipe's default. A variable declared without a default (null)
// must be supplied; it is reported once, here, and not again where it is used.
func (d *decoder) variables(f *fields, vars map[string]string, env []string) {
	n, ok := f.get("variables")
	if !ok {
		return
	}
	path := f.child("variables")
	n = d.resolve(path, n)
	if _, isNull := n.(*ast.NullNode); isNull || n == nil {
		return
	}
	m, ok := n.(*ast.MappingNode)
	if !ok {
		d.errorf(d.at(n), path, "declare variables as NAME: default", "want a mapping, got %s", kindOf(n))
		return
	}
	fromEnv := envVars(env)
	d.names(path, m, "variable name", func(name, p string, keyNode, value ast.Node) {
		v := &variable{}
		if val, ok := vars[name]; ok {
			v.value, v.set = val, true
		} else if val, ok := fromEnv[name]; ok {
			v.value, v.set = val, true
		} else if def := d.resolve(p, value); def != nil {
			s, isScalar := d.scalarOf(p, def)
			switch {
			case !isScalar:
				d.errorf(d.at(def), p, "a default is a string; give lists and mappings their own keys", "want a default value, got %s", kindOf(def))
				return
			case s.kind != "null":
				// Defaults are taken literally: a default cannot refer to other variables.
				v.value, v.set = s.text, true
			}
		}
		if !v.set {
			d.errorf(d.at(keyNode), p, fmt.Sprintf("pass --var %s=VALUE or set %s%s", name, EnvPrefix, name), "has no value")
		}
		d.vars[name] = v
	})
}

// names calls fn for each key of m that is a name as variables and environment variables take
// them (varNameRE), with its path, key and value; any other key is reported as not a valid what.
func (d *decoder) names(path string, m *ast.MappingNode, what string, fn func(name, p string, keyNode, value ast.Node)) {
	for _, mv := range m.Values {
		name, keyNode, _, ok := d.key(path, mv)
		if !ok {
			continue
		}
		p := join(path, name)
		d.positions[p] = d.at(keyNode)
		if !varNameRE.MatchString(name) {
			d.errorf(d.at(keyNode), p, "use letters, digits and _, not starting with a digit", "%q is not a valid %s", name, what)
			continue
		}
		fn(name, p, keyNode, mv.Value)
	}
}

// envVars picks INGOT_VAR_NAME=VALUE entries out of an environment; a later entry wins, as with
// a shell's export.
func envVars(env []string) map[string]string {
	out := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if name, found := strings.CutPrefix(k, EnvPrefix); ok && found && name != "" {
			out[name] = v
		}
	}
	return out
}

// expand substitutes ${var.NAME} in s. "$${" writes a literal "${", so $${var.x} is the text
// ${var.x}. Other ${…} forms (a shell's ${HOME}) pass through untouched. ok is false when s
// refers to an undeclared variable (reported here) or one without a value (reported where it is
// declared).
func (d *decoder) expand(path string, pos Pos, s string) (string, bool) {
	if !strings.Contains(s, "${") {
		return s, true
	}
	var b strings.Builder
	ok := true
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${var."):
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				d.errorf(pos, path, "write ${var.NAME}, or $${ for a literal ${", "unterminated variable reference %q", s[i:])
				return "", false
			}
			name := s[i+len("${var.") : i+end]
			i += end + 1
			if !varNameRE.MatchString(name) {
				d.errorf(pos, path, "write ${var.NAME}, or $${ for a literal ${", "malformed variable reference ${var.%s}", name)
				ok = false
				continue
			}
			v, declared := d.vars[name]
			if !declared {
				declaredNames := slices.Sorted(maps.Keys(d.vars))
				hint := "declare it under variables:"
				if s := suggest(name, declaredNames); s != "" {
					hint = fmt.Sprintf("did you mean %q?", s)
				}
				d.errorf(pos, path, hint, "undeclared variable %q", name)
				ok = false
				continue
			}
			if !v.set {
				ok = false
				continue
			}
			b.WriteString(v.value)
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), ok
}

// UndeclaredVars returns the names in vars (from --var) that none of the recipes declares, sorted.
// Load ignores them, because one command line may build several recipes with different
// variables; the command line should still refuse a name that no recipe uses (a typo would
// otherwise silently leave the default in place).
func UndeclaredVars(vars map[string]string, rs ...*Recipe) []string {
	var out []string
	for name := range vars {
		used := false
		for _, r := range rs {
			if _, ok := r.Variables[name]; ok {
				used = true
				break
			}
		}
		if !used {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
