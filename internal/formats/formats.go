// Package formats is the vocabulary of a build's outputs: the formats ingot writes and the
// options each takes, with their values and defaults. It is the one table of them: recipes checks
// a recipe against it (with positions and suggestions), disk validates what it is asked to make
// against it, and `ingot convert --to` reads its options from it, so none of them can accept what
// another refuses. How each format is made, and what its files are called, is disk's.
package formats

import "slices"

// Format is one output format and the options it takes.
type Format struct {
	Name    string
	Options []Option
}

// Option is one option of a format, as a recipe names it.
type Option struct {
	Key string
	// Values are what the option takes, the default first; nil for a boolean (default false).
	Values []string
}

// Default is the value an option has when it is not given: its first value, or "" for a
// boolean.
func (o Option) Default() string {
	if o.Values == nil {
		return ""
	}
	return o.Values[0]
}

// All returns the output formats, in the order documentation lists them.
func All() []Format {
	return []Format{
		{"qcow2", []Option{{"compress", []string{"none", "zlib", "zstd"}}}},
		{"vmdk", []Option{{"subformat", []string{"streamOptimized", "monolithicSparse"}}}},
		{"vhdx", nil},
		{"raw", []Option{{"compress", []string{"none", "zstd", "xz"}}, {"bmap", nil}, {"shrink", []string{"none", "minimal"}}}},
		{"ova", nil},
	}
}

// Names returns the formats' names, in the order of All.
func Names() []string {
	var names []string
	for _, f := range All() {
		names = append(names, f.Name)
	}
	return names
}

// Lookup returns the format called name.
func Lookup(name string) (Format, bool) {
	i := slices.IndexFunc(All(), func(f Format) bool { return f.Name == name })
	if i < 0 {
		return Format{}, false
	}
	return All()[i], true
}

// Option returns the option of f called key.
func (f Format) Option(key string) (Option, bool) {
	i := slices.IndexFunc(f.Options, func(o Option) bool { return o.Key == key })
	if i < 0 {
		return Option{}, false
	}
	return f.Options[i], true
}

// Keys returns the names of the options f takes, in its order.
func (f Format) Keys() []string {
	var keys []string
	for _, o := range f.Options {
		keys = append(keys, o.Key)
	}
	return keys
}

// TakenBy returns the formats that take the option key, in the order of All.
func TakenBy(key string) []string {
	var names []string
	for _, f := range All() {
		if _, ok := f.Option(key); ok {
			names = append(names, f.Name)
		}
	}
	return names
}
