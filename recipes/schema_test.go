package recipes

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/ingot-build/ingot/internal/formats"
)

// docs/recipe.schema.json is for editors (yaml-language-server). These tests keep it honest:
// it is valid JSON, every recipe we ship or document validates against it, it rejects what the
// loader rejects for structural reasons, and its properties are exactly the Go types' keys.
// No JSON Schema library is in go.mod, so a small draft-07 validator for the keywords the schema
// uses lives here; it fails on any keyword it does not implement, so it cannot silently pass.

const schemaPath = "../docs/recipe.schema.json"

func loadSchema(t *testing.T) *schemaValidator {
	t.Helper()
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatalf("%s is not valid JSON: %v", schemaPath, err)
	}
	if root["$schema"] != "http://json-schema.org/draft-07/schema#" {
		t.Fatalf("$schema = %v, want draft-07 (what yaml-language-server supports best)", root["$schema"])
	}
	return &schemaValidator{root: root}
}

type schemaValidator struct {
	root map[string]any
}

// validate returns every violation of schema by inst, one string each, naming the instance path.
func (v *schemaValidator) validate(schema any, inst any, path string) []string {
	switch s := schema.(type) {
	case bool:
		if !s {
			return []string{path + ": not allowed"}
		}
		return nil
	case map[string]any:
		return v.validateObject(s, inst, path)
	}
	return []string{fmt.Sprintf("%s: schema of type %T", path, schema)}
}

func (v *schemaValidator) resolveRef(ref string) any {
	name, ok := strings.CutPrefix(ref, "#/definitions/")
	if !ok {
		return false
	}
	defs, _ := v.root["definitions"].(map[string]any)
	if d, ok := defs[name]; ok {
		return d
	}
	return false
}

func (v *schemaValidator) validateObject(s map[string]any, inst any, path string) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	if ref, ok := s["$ref"].(string); ok {
		return v.validate(v.resolveRef(ref), inst, path) // draft-07: siblings of $ref are ignored
	}
	for kw, val := range s {
		switch kw {
		case "type":
			types := []any{val}
			if list, ok := val.([]any); ok {
				types = list
			}
			if !slices.ContainsFunc(types, func(t any) bool { return jsonType(inst, t.(string)) }) {
				fail("want type %v, got %T", val, inst)
				return errs // the other keywords would only repeat it
			}
		case "enum":
			if !slices.ContainsFunc(val.([]any), func(e any) bool { return jsonEqual(e, inst) }) {
				fail("%v is not one of %v", inst, val)
			}
		case "const":
			if !jsonEqual(val, inst) {
				fail("%v is not %v", inst, val)
			}
		case "pattern":
			if str, ok := inst.(string); ok && !regexp.MustCompile(val.(string)).MatchString(str) {
				fail("%q does not match %s", str, val)
			}
		case "minLength", "maxLength":
			if str, ok := inst.(string); ok {
				n, lim := len([]rune(str)), int(val.(float64))
				if (kw == "minLength" && n < lim) || (kw == "maxLength" && n > lim) {
					fail("length %d violates %s %d", n, kw, lim)
				}
			}
		case "minimum", "maximum":
			if f, ok := number(inst); ok {
				lim := val.(float64)
				if (kw == "minimum" && f < lim) || (kw == "maximum" && f > lim) {
					fail("%v violates %s %v", inst, kw, lim)
				}
			}
		case "properties", "additionalProperties", "required", "minProperties", "maxProperties", "propertyNames":
			if obj, ok := inst.(map[string]any); ok {
				errs = append(errs, v.objectKeyword(s, kw, val, obj, path)...)
			}
		case "items", "additionalItems", "minItems", "uniqueItems":
			if arr, ok := inst.([]any); ok {
				errs = append(errs, v.arrayKeyword(s, kw, val, arr, path)...)
			}
		case "anyOf", "oneOf":
			matched := 0
			for _, sub := range val.([]any) {
				if len(v.validate(sub, inst, path)) == 0 {
					matched++
				}
			}
			if (kw == "anyOf" && matched == 0) || (kw == "oneOf" && matched != 1) {
				fail("%s: %d alternatives match", kw, matched)
			}
		case "allOf":
			for _, sub := range val.([]any) {
				errs = append(errs, v.validate(sub, inst, path)...)
			}
		case "not":
			if len(v.validate(val, inst, path)) == 0 {
				fail("matches a schema it must not")
			}
		case "if":
			branch := "else"
			if len(v.validate(val, inst, path)) == 0 {
				branch = "then"
			}
			if sub, ok := s[branch]; ok {
				errs = append(errs, v.validate(sub, inst, path)...)
			}
		case "then", "else":
			// with "if"
		default:
			// Annotations do not constrain instances; anything else must be implemented above.
			if !slices.Contains([]string{"$schema", "$id", "title", "description", "definitions", "default", "examples"}, kw) {
				fail("the test validator does not implement keyword %q", kw)
			}
		}
	}
	return errs
}

func (v *schemaValidator) objectKeyword(s map[string]any, kw string, val any, obj map[string]any, path string) []string {
	var errs []string
	props, _ := s["properties"].(map[string]any)
	switch kw {
	case "properties":
		for k, sub := range props {
			if x, ok := obj[k]; ok {
				errs = append(errs, v.validate(sub, x, join(path, k))...)
			}
		}
	case "additionalProperties":
		for k, x := range obj {
			if _, declared := props[k]; !declared {
				errs = append(errs, v.validate(val, x, join(path, k))...)
			}
		}
	case "required":
		for _, k := range val.([]any) {
			if _, ok := obj[k.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: %s is required", path, k))
			}
		}
	case "minProperties":
		if len(obj) < int(val.(float64)) {
			errs = append(errs, fmt.Sprintf("%s: fewer than %v properties", path, val))
		}
	case "maxProperties":
		if len(obj) > int(val.(float64)) {
			errs = append(errs, fmt.Sprintf("%s: more than %v properties", path, val))
		}
	case "propertyNames":
		for k := range obj {
			errs = append(errs, v.validate(val, k, join(path, k))...)
		}
	}
	return errs
}

func (v *schemaValidator) arrayKeyword(s map[string]any, kw string, val any, arr []any, path string) []string {
	var errs []string
	switch kw {
	case "items":
		if tuple, ok := val.([]any); ok {
			for i, x := range arr {
				sub, ok := s["additionalItems"]
				if i < len(tuple) {
					sub, ok = tuple[i], true
				}
				if ok {
					errs = append(errs, v.validate(sub, x, fmt.Sprintf("%s[%d]", path, i))...)
				}
			}
		} else {
			for i, x := range arr {
				errs = append(errs, v.validate(val, x, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	case "additionalItems":
		// with a tuple "items"
	case "minItems":
		if len(arr) < int(val.(float64)) {
			errs = append(errs, fmt.Sprintf("%s: fewer than %v items", path, val))
		}
	case "uniqueItems":
		for i := range arr {
			for j := range i {
				if val == true && jsonEqual(arr[i], arr[j]) {
					errs = append(errs, fmt.Sprintf("%s: items %d and %d are equal", path, j, i))
				}
			}
		}
	}
	return errs
}

func number(x any) (float64, bool) {
	switch n := x.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case int:
		return float64(n), true
	}
	return 0, false
}

func jsonType(x any, t string) bool {
	switch t {
	case "object":
		_, ok := x.(map[string]any)
		return ok
	case "array":
		_, ok := x.([]any)
		return ok
	case "string":
		_, ok := x.(string)
		return ok
	case "boolean":
		_, ok := x.(bool)
		return ok
	case "null":
		return x == nil
	case "number":
		_, ok := number(x)
		return ok
	case "integer":
		f, ok := number(x)
		return ok && f == math.Trunc(f)
	}
	return false
}

func jsonEqual(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	return reflect.DeepEqual(a, b)
}

// yamlDoc decodes YAML into the JSON data model.
func yamlDoc(t *testing.T, data []byte) any {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return normalizeJSON(doc)
}

func normalizeJSON(x any) any {
	switch v := x.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeJSON(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = normalizeJSON(e)
		}
		return v
	case uint64:
		return float64(v)
	case int64:
		return float64(v)
	case int:
		return float64(v)
	}
	return x
}

// Every built-in recipe and every recipe in testdata/good validates against the schema.
func TestSchemaAcceptsShippedRecipes(t *testing.T) {
	v := loadSchema(t)
	var docs []string
	for _, e := range Catalog() {
		docs = append(docs, "catalog/"+e.Name+".yaml")
	}
	good, _ := filepath.Glob("testdata/good/*.yaml")
	docs = append(docs, good...)
	if len(docs) < 8 {
		t.Fatalf("only %d documents to check", len(docs))
	}
	for _, path := range docs {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if errs := v.validate(v.root, yamlDoc(t, data), ""); len(errs) > 0 {
			t.Errorf("%s does not validate against the schema:\n  %s", path, strings.Join(errs, "\n  "))
		}
	}
}

// testdata/good recipes also load: the schema and the loader agree on them.
func TestGoodRecipesLoad(t *testing.T) {
	good, _ := filepath.Glob("testdata/good/*.yaml")
	for _, path := range good {
		if _, err := Load(path, map[string]string{"level": "2"}, nil); err != nil {
			t.Errorf("%s:\n%v", path, err)
		}
	}
}

// The schema rejects structural mistakes, as the loader does; a validator that accepted
// everything would fail here.
func TestSchemaRejects(t *testing.T) {
	v := loadSchema(t)
	base := "name: t\nsource: { disk: { url: https://example.org/t.qcow2, sha256: " + emptySHA256 + " } }\n"
	tests := []struct {
		name, yaml string
	}{
		{"unknown top-level key", base + "provisioners: []\n"},
		{"unknown machine key", base + "machine: { memroy: 2GiB }\n"},
		{"missing pin", "name: t\nsource: { disk: { url: https://example.org/t.qcow2 } }\n"},
		{"two pins", "name: t\nsource: { disk: { url: u, sha256: " + emptySHA256 + ", sha512: file:SUMS } }\n"},
		{"short digest", "name: t\nsource: { disk: { url: u, sha256: abc } }\n"},
		{"two sources", "name: t\nsource: { image: a, iso: { url: u, sha256: " + emptySHA256 + " } }\n"},
		{"no source", "name: t\n"},
		{"bad name", "name: Web Server\nsource: { image: a }\n"},
		{"decimal size", base + "machine: { memory: 2GB }\n"},
		{"bare size", base + "machine: { memory: 2048 }\n"},
		{"cpus zero", base + "machine: { cpus: 0 }\n"},
		{"quoted cpus", base + "machine: { cpus: \"2\" }\n"},
		{"bad firmware", base + "machine: { firmware: efi }\n"},
		{"step with two kinds", base + "provision: [ { shell: x, reboot: {} } ]\n"},
		{"empty step", base + "provision: [ {} ]\n"},
		{"cache without a step", base + "provision: [ { cache: false } ]\n"},
		{"cache not a boolean", base + "provision: [ { shell: x, cache: \"no\" } ]\n"},
		{"cache inside the kind", base + "provision: [ { shell: { inline: x, cache: false } } ]\n"},
		{"shell with both", base + "provision: [ { shell: { inline: x, script: y } } ]\n"},
		{"unquoted mode", base + "provision: [ { file: { src: a, dst: /a, mode: 0644 } } ]\n"},
		{"file without dst", base + "provision: [ { file: { src: a } } ]\n"},
		{"bad duration", base + "ssh: { timeout: 600 }\n"},
		{"root user", base + "ssh: { user: root }\n"},
		{"unknown keep", base + "generalize: { keep: [everything] }\n"},
		{"duplicate keep", base + "generalize: { keep: [logs, logs] }\n"},
		{"bmap on qcow2", base + "outputs: [ { format: qcow2, bmap: true } ]\n"},
		{"xz on qcow2", base + "outputs: [ { format: qcow2, compress: xz } ]\n"},
		{"zlib on raw", base + "outputs: [ { format: raw, compress: zlib } ]\n"},
		{"options on vhdx", base + "outputs: [ { format: vhdx, subformat: dynamic } ]\n"},
		{"no outputs", base + "outputs: []\n"},
		{"qemu_args not an option", base + "machine: { qemu_args: [ [virtio-rng-pci] ] }\n"},
		{"variable as a list", base + "variables: { a: [1] }\n"},
		{"unknown test key", base + "test: { boots: all }\n"},
		{"unknown boot", base + "test: { boot: most }\n"},
		{"boot as a boolean", base + "test: { boot: false }\n"},
		{"test as a list", base + "test: [ { name: a, run: x } ]\n"},
		{"unknown test firmware", base + "test: { firmware: [efi] }\n"},
		{"a test firmware twice", base + "test: { firmware: [uefi, uefi] }\n"},
		{"no test firmwares", base + "test: { firmware: [] }\n"},
		{"tests as a mapping", base + "tests: { boot: all }\n"},
		{"check without run", base + "tests: [ { name: a } ]\n"},
		{"check without name", base + "tests: [ { run: x } ]\n"},
		{"check with an empty run", base + "tests: [ { name: a, run: \"\" } ]\n"},
		{"check named as a built-in", base + "tests: [ { name: grown, run: x } ]\n"},
		{"check with a bad name", base + "tests: [ { name: Web Check, run: x } ]\n"},
		{"check with a bare timeout", base + "tests: [ { name: a, run: x, timeout: 30 } ]\n"},
		{"check with an unknown key", base + "tests: [ { name: a, run: x, command: y } ]\n"},
		{"check as a string", base + "tests: [ curl localhost ]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errs := v.validate(v.root, yamlDoc(t, []byte(tt.yaml)), ""); len(errs) == 0 {
				t.Errorf("schema accepts:\n%s", tt.yaml)
			}
		})
	}
}

// schemaProps collects the property schemas of an object schema, following $ref and looking into
// anyOf/oneOf/allOf alternatives (a step is a oneOf of single-key objects; shell is a string or an
// object).
func (v *schemaValidator) schemaProps(node any) map[string]any {
	out := map[string]any{}
	s, ok := node.(map[string]any)
	if !ok {
		return out
	}
	if ref, ok := s["$ref"].(string); ok {
		return v.schemaProps(v.resolveRef(ref))
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for k, p := range props {
			out[k] = p
		}
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		alts, _ := s[kw].([]any)
		for _, alt := range alts {
			for k, p := range v.schemaProps(alt) {
				out[k] = p
			}
		}
	}
	return out
}

// hasYAMLFields says whether a Go type is a YAML mapping in a recipe (a struct with yaml keys).
func hasYAMLFields(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for f := range t.Fields() {
		if tag := f.Tag.Get("yaml"); tag != "" && tag != "-" {
			return true
		}
	}
	return false
}

// The schema's properties are the Go types' yaml keys, at every level, and nothing else: the
// editor's completion, the loader's known keys and the types cannot drift apart.
func TestSchemaMatchesTypes(t *testing.T) {
	v := loadSchema(t)
	var walk func(path string, typ reflect.Type, node any)
	walk = func(path string, typ reflect.Type, node any) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Struct {
			s, _ := node.(map[string]any)
			walk(path+"[]", typ.Elem(), s["items"])
			return
		}
		props := v.schemaProps(node)
		if !hasYAMLFields(typ) {
			if len(props) > 0 {
				t.Errorf("%s: schema has properties %v, the Go type %s has none", path, slices.Sorted(mapsKeys(props)), typ)
			}
			return
		}
		var goKeys []string
		for f := range typ.Fields() {
			tag := f.Tag.Get("yaml")
			if tag == "" || tag == "-" {
				continue
			}
			goKeys = append(goKeys, tag)
			sub, ok := props[tag]
			if !ok {
				t.Errorf("%s: the Go type %s has %q, the schema does not", path, typ, tag)
				continue
			}
			walk(join(path, tag), f.Type, sub)
		}
		for k := range props {
			if !slices.Contains(goKeys, k) {
				t.Errorf("%s: the schema has %q, the Go type %s does not", path, k, typ)
			}
		}
	}
	walk("", reflect.TypeFor[Recipe](), v.root)
}

func mapsKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// The outputs a recipe may ask for are the formats table's, in the loader and in the schema
// alike: each format with each option and value, taken or not, is accepted by both or refused by
// both, and accepted exactly when the table lists it. The loader's defaults are the table's.
func TestOutputsFollowFormats(t *testing.T) {
	v := loadSchema(t)
	var values []string // every value of every option, and one no option takes
	for _, f := range formats.All() {
		for _, o := range f.Options {
			values = append(values, o.Values...)
		}
	}
	values = append(slices.Compact(slices.Sorted(slices.Values(values))), "bogus")
	base := "name: t\nsource: { disk: { url: https://example.org/t.qcow2, sha256: " + emptySHA256 + " } }\n"
	check := func(yml string, want bool) *Recipe {
		t.Helper()
		schemaOK := len(v.validate(v.root, yamlDoc(t, []byte(yml)), "")) == 0
		r, err := LoadBytes("r.yaml", []byte(yml), "", nil, nil)
		if schemaOK != want || (err == nil) != want {
			t.Errorf("schema accepts: %v, Load: %v; want accepted: %v\n%s", schemaOK, err, want, yml)
		}
		return r
	}
	for _, f := range append(formats.All(), formats.Format{Name: "qcow3"}) {
		_, known := formats.Lookup(f.Name)
		r := check(base+"outputs: [ { format: "+f.Name+" } ]\n", known)
		if known {
			for _, o := range f.Options {
				if o.Values == nil {
					continue
				}
				if got := r.Outputs[0].option(o.Key); got == nil || *got != o.Default() {
					t.Errorf("%s: %s is not its default %q: %+v", f.Name, o.Key, o.Default(), r.Outputs[0])
				}
			}
		}
		for _, key := range []string{"compress", "subformat", "bmap", "shrink"} {
			o, takes := f.Option(key)
			if key == "bmap" {
				check(fmt.Sprintf("%soutputs: [ { format: %s, bmap: true } ]\n", base, f.Name), takes)
				continue
			}
			for _, val := range values {
				check(fmt.Sprintf("%soutputs: [ { format: %s, %s: %s } ]\n", base, f.Name, key, val), takes && slices.Contains(o.Values, val))
			}
		}
	}
}
