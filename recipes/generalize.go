package recipes

import (
	"fmt"
	"slices"

	"github.com/goccy/go-yaml/ast"
)

// generalize reads generalize:, a boolean or a mapping with keep.
func (d *decoder) generalize(top *fields) Generalize {
	g := Generalize{Enabled: true, Pos: top.at}
	n, ok := top.get("generalize")
	if !ok {
		return g
	}
	g.Pos = d.positions["generalize"]
	r := d.resolve("generalize", n)
	if _, isMap := r.(*ast.MappingNode); !isMap {
		if _, isNull := r.(*ast.NullNode); !isNull {
			if v, ok := d.boolean("generalize", n); ok {
				g.Enabled = v
			}
			return g
		}
	}
	f, ok := d.mapping("generalize", g.Pos, n, true, yamlKeys[Generalize]())
	if !ok {
		return g
	}
	if kn, ok := f.get("keep"); ok {
		p := f.child("keep")
		items, _ := d.list(p, kn)
		for i, item := range items {
			ip := fmt.Sprintf("%s[%d]", p, i)
			v, ok := d.enum(ip, item, GeneralizeKeepable()...)
			if !ok {
				continue
			}
			if slices.Contains(g.Keep, v) {
				d.errorf(d.at(item), ip, "", "%q is listed twice", v)
				continue
			}
			g.Keep = append(g.Keep, v)
		}
	}
	return g
}
