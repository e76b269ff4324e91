package recipes

import "fmt"

// Drift is the recipe's drift: section: what `ingot build --baseline` holds a build to against
// its baseline (issue 15; docs/drift.md). recipes keeps the expressions as written, with their
// places: bake checks them with the drift package (which recipes, knowing no other part, does
// not import) and names the place of a bad one.
type Drift struct {
	// FailOn are thresholds ("packages.changed>0", "size.growth>5%"): crossing one keeps the
	// outputs in quarantine and fails the build.
	FailOn []string `yaml:"fail_on"`
	// Ignore are globs of paths added to the diff's default noise list.
	Ignore []string `yaml:"ignore"`
	Pos    Pos      `yaml:"-"`
}

// drift reads drift:, a mapping with fail_on and ignore, both optional lists of strings.
func (d *decoder) drift(top *fields) Drift {
	dr := Drift{Pos: top.at}
	n, ok := top.get("drift")
	if !ok {
		return dr
	}
	dr.Pos = d.positions["drift"]
	f, ok := d.mapping("drift", dr.Pos, n, true, yamlKeys[Drift]())
	if !ok {
		return dr
	}
	for _, key := range []string{"fail_on", "ignore"} {
		vn, ok := f.get(key)
		if !ok {
			continue
		}
		p := f.child(key)
		ss, _ := d.strings(p, vn)
		for i, s := range ss {
			if s == "" {
				d.errorf(d.positions[fmt.Sprintf("%s[%d]", p, i)], fmt.Sprintf("%s[%d]", p, i), "remove it, or write an expression such as packages.changed>0", "is empty")
			}
		}
		if key == "fail_on" {
			dr.FailOn = ss
		} else {
			dr.Ignore = ss
		}
	}
	return dr
}
