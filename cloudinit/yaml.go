package cloudinit

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
)

// maxDepth bounds nesting, so that a self-referencing map is an error and not a stack overflow.
const maxDepth = 64

// normalize deep-copies v into the document model the merge and the encoder work on:
// map[string]any, []any, string, bool, int64, uint64 (only above math.MaxInt64), float64 and nil.
// Copying means merging never writes into the caller's maps. Anything else (structs, []byte,
// non-string keys, invalid UTF-8) is an error naming the path, and never the value, which may be a
// secret.
func normalize(path string, v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%s: nested deeper than %d levels", path, maxDepth)
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%s: string is not valid UTF-8", path)
		}
		return v, nil
	case yaml.MapSlice:
		// go-yaml's ordered map (UseOrderedMap): output is sorted anyway, but duplicate keys,
		// which a MapSlice can hold, must not silently drop one value.
		m := make(map[string]any, len(v))
		for _, item := range v {
			k, ok := item.Key.(string)
			if !ok {
				return nil, fmt.Errorf("%s: map key of type %T, want a string", path, item.Key)
			}
			if err := checkKey(path, k); err != nil {
				return nil, err
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("%s: duplicate key %q", path, k)
			}
			x, err := normalize(childPath(path, k), item.Value, depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = x
		}
		return m, nil
	}

	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil, nil
		}
		return normalize(path, rv.Elem().Interface(), depth)
	case reflect.Bool:
		return rv.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if u := rv.Uint(); u > math.MaxInt64 {
			return u, nil
		}
		return int64(rv.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return rv.Float(), nil
	case reflect.String:
		return normalize(path, rv.String(), depth)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return nil, nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return nil, fmt.Errorf("%s: %T: bytes have no YAML form here, pass a string", path, v)
		}
		list := make([]any, rv.Len())
		for i := range rv.Len() {
			x, err := normalize(fmt.Sprintf("%s[%d]", path, i), rv.Index(i).Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			list[i] = x
		}
		return list, nil
	case reflect.Map:
		if rv.IsNil() {
			return nil, nil
		}
		m := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			kv := it.Key()
			if kv.Kind() == reflect.Interface {
				kv = kv.Elem()
			}
			if kv.Kind() != reflect.String {
				return nil, fmt.Errorf("%s: map key of type %s, want a string", path, kv.Type())
			}
			k := kv.String()
			if err := checkKey(path, k); err != nil {
				return nil, err
			}
			x, err := normalize(childPath(path, k), it.Value().Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = x
		}
		return m, nil
	}
	return nil, fmt.Errorf("%s: value of type %T has no YAML form here", path, v)
}

// maxKeyLen bounds a mapping key as written. YAML allows an implicit ("simple") key of at most
// 1024 characters on its line, PyYAML enforces it, and go-yaml has no explicit "? key" form to
// fall back on.
const maxKeyLen = 1024

func checkKey(path, k string) error {
	if !utf8.ValidString(k) {
		return fmt.Errorf("%s: map key is not valid UTF-8", path)
	}
	n := len(k)
	if !plainSafe(k) {
		n = utf8.RuneCountInString(strconv.Quote(k))
	}
	if n > maxKeyLen {
		return fmt.Errorf("%s: map key of %d characters as YAML, more than the %d YAML allows", path, n, maxKeyLen)
	}
	return nil
}

// normalizeMap is normalize for a document root.
func normalizeMap(path string, m map[string]any) (map[string]any, error) {
	if m == nil {
		return map[string]any{}, nil
	}
	v, err := normalize(path, m, 0)
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

func childPath(path, key string) string {
	if plainSafe(key) {
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

// marshal encodes a normalized document with keys sorted and every scalar in a form that PyYAML
// (YAML 1.1, what cloud-init parses with) and go-yaml (YAML 1.2) read back as the same value.
func marshal(doc map[string]any) ([]byte, error) {
	return yaml.MarshalWithOptions(encodable(doc), yaml.Indent(2))
}

// encodable turns the document model into values whose YAML form is fixed by this package:
// go-yaml sorts map keys (fmt.Sprint order, which is byte order for these string kinds), and
// strings and floats get their text from quotedString and rawScalar.
func encodable(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[any]any, len(v))
		for k, x := range v {
			m[scalarString(k)] = encodable(x)
		}
		return m
	case []any:
		list := make([]any, len(v))
		for i, x := range v {
			list[i] = encodable(x)
		}
		return list
	case string:
		return scalarString(v)
	case float64:
		return rawScalar(formatFloat(v))
	}
	return v // nil, bool, int64, uint64: go-yaml writes null, true/false and decimal digits
}

func scalarString(s string) any {
	if plainSafe(s) {
		return s
	}
	return quotedString(s)
}

// quotedString is a string written as a YAML double-quoted scalar.
type quotedString string

// MarshalYAML quotes with Go syntax, which for valid UTF-8 is also YAML syntax: the escapes Go emits
// (\a \b \f \n \r \t \v \\ \" \xNN below 0x80, \uNNNN, \UNNNNNNNN) all exist in YAML with the same
// meaning, and it escapes every non-printing and non-ASCII space character, which keeps the
// stream inside what PyYAML's reader accepts. go-yaml parses this and prints it back the same way.
func (s quotedString) MarshalYAML() ([]byte, error) {
	return []byte(strconv.Quote(string(s))), nil
}

// rawScalar is a scalar whose text is already valid YAML (a formatted float).
type rawScalar string

func (s rawScalar) MarshalYAML() ([]byte, error) { return []byte(s), nil }

// formatFloat writes f so both YAML versions read a float: YAML 1.1 (PyYAML) requires a '.' in
// the mantissa and a signed exponent, so 1e+06 would be a string to it, and 100 an integer.
func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return ".nan"
	case math.IsInf(f, 1):
		return ".inf"
	case math.IsInf(f, -1):
		return "-.inf"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64) // shortest text that round-trips; exponent is signed
	mant, exp, hasExp := strings.Cut(s, "e")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	if hasExp {
		return mant + "e" + exp
	}
	return mant
}

// yaml11Words are plain scalars that some YAML version reads as something other than a string
// (PyYAML's bool and null resolvers, plus y/n and bare inf/nan, which other YAML 1.1 readers
// take as booleans and floats), compared case-insensitively.
var yaml11Words = map[string]bool{
	"y": true, "n": true, "yes": true, "no": true, "on": true, "off": true,
	"true": true, "false": true, "null": true, "inf": true, "nan": true,
}

// plainSafe reports whether s can be written as a plain scalar and is read back as the same string
// by any YAML parser. The rule is deliberately narrow (quoting too much costs nothing): a letter,
// '/' or '_' first rules out numbers, dates, ".inf" and every indicator character; letters, digits
// and "_-./" after it rule out ": ", " #", flow characters and whitespace.
func plainSafe(s string) bool {
	if s == "" || yaml11Words[strings.ToLower(s)] {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '/', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}
