package recipes

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ingot-build/ingot/internal/formats"
)

// outputs reads the outputs list. The formats, their options and the values each takes are the
// formats package's table, which disk validates against too. Which files an output writes, and
// so which outputs (or downloads) clash, is disk's naming to know: bake.Check refuses those.
func (d *decoder) outputs(top *fields) []Output {
	n, ok := top.get("outputs")
	if !ok {
		o := Output{Format: "qcow2", Pos: top.at}
		qcow2, _ := formats.Lookup(o.Format)
		o.setDefaults(qcow2)
		return []Output{o}
	}
	items, ok := d.list("outputs", n)
	if ok && len(items) == 0 {
		d.errorf(d.positions["outputs"], "outputs", "list at least one, or leave outputs out for a single qcow2", "is empty")
		return nil
	}
	var outs []Output
	for i, item := range items {
		p := fmt.Sprintf("outputs[%d]", i)
		f, ok := d.mapping(p, d.at(d.resolve(p, item)), item, false, yamlKeys[Output]())
		if !ok {
			continue
		}
		o := Output{Pos: f.at}
		fn, ok := f.get("format")
		if !ok {
			d.missing(f, "format", "use one of "+strings.Join(formats.Names(), ", "))
			continue
		}
		if o.Format, ok = d.enum(f.child("format"), fn, formats.Names()...); !ok {
			continue
		}
		format, _ := formats.Lookup(o.Format)
		for _, k := range slices.Sorted(maps.Keys(f.vals)) {
			if _, takes := format.Option(k); !takes && k != "format" {
				hint := o.Format + " outputs take no options"
				if len(format.Options) > 0 {
					hint = o.Format + " outputs take " + strings.Join(slices.Sorted(slices.Values(format.Keys())), ", ")
				}
				d.errorf(d.positions[f.child(k)], f.child(k), hint, "does not apply to %s outputs", o.Format)
			}
		}
		o.setDefaults(format)
		for _, opt := range format.Options {
			kn, has := f.get(opt.Key)
			switch {
			case !has:
			case opt.Key == "bmap":
				o.Bmap, _ = d.boolean(f.child(opt.Key), kn)
			default:
				*o.option(opt.Key), _ = d.enum(f.child(opt.Key), kn, opt.Values...)
			}
		}
		outs = append(outs, o)
	}
	return outs
}

// setDefaults gives each string option that format takes its default.
func (o *Output) setDefaults(format formats.Format) {
	for _, opt := range format.Options {
		if v := o.option(opt.Key); v != nil {
			*v = opt.Default()
		}
	}
}

// option points at the field of o that holds the string option key; nil for bmap, a boolean.
func (o *Output) option(key string) *string {
	switch key {
	case "compress":
		return &o.Compress
	case "subformat":
		return &o.Subformat
	case "shrink":
		return &o.Shrink
	}
	return nil
}
