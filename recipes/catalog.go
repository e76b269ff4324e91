package recipes

import (
	"embed"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// The built-in catalogue: one recipe per file, named after the recipe. Embedded, so that
// `ingot build debian-12` works from the binary alone.
//
//go:embed catalog/*.yaml
var catalogFS embed.FS

// CatalogPrefix marks a built-in recipe's File: "catalog:debian-12".
const CatalogPrefix = "catalog:"

// Entry is a built-in recipe.
type Entry struct {
	Name        string
	Description string
}

// Catalog lists the built-in recipes, sorted by name.
func Catalog() []Entry {
	files, err := catalogFS.ReadDir("catalog")
	if err != nil {
		return nil // cannot happen: the directory is embedded
	}
	var out []Entry
	for _, f := range files {
		name, ok := strings.CutSuffix(f.Name(), ".yaml")
		if !ok {
			continue
		}
		data, _ := CatalogSource(name)
		out = append(out, Entry{Name: name, Description: description(data)})
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Lookup finds a built-in recipe by name.
func Lookup(name string) (Entry, bool) {
	data, ok := CatalogSource(name)
	if !ok {
		return Entry{}, false
	}
	return Entry{Name: name, Description: description(data)}, true
}

// CatalogSource returns a built-in recipe's text, as `ingot recipes show` prints it.
func CatalogSource(name string) ([]byte, bool) {
	if name == "" || strings.ContainsAny(name, `/\`) || name != path.Clean(name) {
		return nil, false
	}
	data, err := catalogFS.ReadFile("catalog/" + name + ".yaml")
	return data, err == nil
}

// LoadCatalog loads a built-in recipe. Its File is "catalog:NAME", and positions in its errors
// name it the same way.
func LoadCatalog(name string, vars map[string]string, env []string) (*Recipe, error) {
	data, ok := CatalogSource(name)
	if !ok {
		return nil, unknownRecipe(name)
	}
	return LoadBytes(CatalogPrefix+name, data, "", vars, env)
}

// Resolve loads what a command line names: a recipe file if one exists at arg, else a built-in
// recipe of that name. An argument that looks like a path (it has a slash or a .yaml/.yml
// suffix) is always a file, so a typo in a path is reported as a missing file.
func Resolve(arg string, vars map[string]string, env []string) (*Recipe, error) {
	if fi, err := os.Stat(arg); err == nil && !fi.IsDir() {
		return Load(arg, vars, env)
	}
	looksLikePath := strings.ContainsAny(arg, `/\`) || strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml")
	if !looksLikePath {
		if _, ok := CatalogSource(arg); ok {
			return LoadCatalog(arg, vars, env)
		}
		if fi, err := os.Stat(arg); err == nil && fi.IsDir() {
			return Load(arg, vars, env) // says it is a directory and names the recipes in it
		}
		return nil, unknownRecipe(arg)
	}
	return Load(arg, vars, env)
}

func unknownRecipe(name string) error {
	var names []string
	for _, e := range Catalog() {
		names = append(names, e.Name)
	}
	hint := ""
	if s := suggest(name, names); s != "" {
		hint = fmt.Sprintf("; did you mean %q?", s)
	}
	return fmt.Errorf("%s: no such recipe file and no built-in recipe of that name%s (built-in: %s)", name, hint, strings.Join(names, ", "))
}

// description reads a recipe's top-level description without loading it: listing the catalogue
// must not need the variables a recipe requires.
func description(data []byte) string {
	f, err := parser.ParseBytes(data, 0)
	if err != nil || len(f.Docs) == 0 {
		return ""
	}
	m, ok := f.Docs[0].Body.(*ast.MappingNode)
	if !ok {
		return ""
	}
	for _, mv := range m.Values {
		if mv.Key.GetToken().Value != "description" {
			continue
		}
		switch v := mv.Value.(type) {
		case *ast.StringNode:
			return v.Value
		case *ast.LiteralNode:
			return strings.TrimSpace(v.Value.Value)
		}
	}
	return ""
}
