package drift

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	isuggest "github.com/ingot-build/ingot/internal/suggest"
)

// Units of metrics: how a threshold writes a limit on one.
const (
	UnitCount   = "count"   // a plain number
	UnitPercent = "percent" // a number, with or without %
	UnitBytes   = "bytes"   // a number, with or without a size suffix (KiB, MB, …)
)

// Metric is one number a Report computes and a threshold reads.
type Metric struct {
	Name string
	Unit string
	Doc  string
	// NeedsInventory says the metric needs the file inventory of both builds.
	NeedsInventory bool
}

// Metrics lists the metrics by name, in the order documented in docs/drift.md.
func Metrics() []Metric {
	return []Metric{
		{"packages.added", UnitCount, "packages in B that A does not have", false},
		{"packages.removed", UnitCount, "packages in A that B does not have", false},
		{"packages.upgraded", UnitCount, "packages whose version is higher in B (Debian version order)", false},
		{"packages.downgraded", UnitCount, "packages whose version is lower in B", false},
		{"packages.changed", UnitCount, "every package that differs: the four above, and version changes that cannot be ordered", false},
		{"files.added", UnitCount, "paths in B that A does not have, noise left out", true},
		{"files.removed", UnitCount, "paths in A that B does not have, noise left out", true},
		{"files.changed", UnitCount, "paths on both sides whose content, mode, owner or type differs, noise left out", true},
		{"setuid.added", UnitCount, "regular files setuid or setgid in B and not in A (noise included)", true},
		{"size.bytes", UnitBytes, "growth of the image's regular-file bytes, noise left out (negative: it shrank)", true},
		{"size.growth", UnitPercent, "size.bytes in percent of A's regular-file bytes", true},
		{"outputs.bytes", UnitBytes, "growth of the outputs' total size (every output file the manifest lists)", false},
		{"outputs.growth", UnitPercent, "outputs.bytes in percent of A's total output size", false},
	}
}

func metricNames() []string {
	var names []string
	for _, m := range Metrics() {
		names = append(names, m.Name)
	}
	return names
}

func metricByName(name string) (Metric, bool) {
	for _, m := range Metrics() {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// metrics fills r.Metrics from the rest of the report, and r.Unavailable with what cannot be
// computed.
func (r *Report) metrics() {
	p := r.Packages
	set := func(name string, v float64) { r.Metrics[name] = v }
	set("packages.added", float64(len(p.Added)))
	set("packages.removed", float64(len(p.Removed)))
	set("packages.upgraded", float64(len(p.Upgraded)))
	set("packages.downgraded", float64(len(p.Downgraded)))
	set("packages.changed", float64(len(p.Added)+len(p.Removed)+len(p.Upgraded)+len(p.Downgraded)+len(p.Changed)))
	if f := r.Files; f != nil {
		set("files.added", float64(len(f.Added)))
		set("files.removed", float64(len(f.Removed)))
		set("files.changed", float64(len(f.Changed)))
		set("setuid.added", float64(len(f.SetuidAdded)))
		set("size.bytes", float64(f.BytesB-f.BytesA))
		r.growth("size.growth", f.BytesA, f.BytesB, fmt.Sprintf("%s has no regular-file bytes to grow from", r.A.Label))
	}
	var outA, outB int64
	for _, o := range r.Outputs {
		if o.A != nil {
			outA += o.A.Size
		}
		if o.B != nil {
			outB += o.B.Size
		}
	}
	set("outputs.bytes", float64(outB-outA))
	r.growth("outputs.growth", outA, outB, fmt.Sprintf("%s has no output bytes to grow from", r.A.Label))
}

// growth sets a percentage metric: 0 from nothing to nothing, unavailable from nothing to
// something (no percentage describes it; the matching .bytes metric does).
func (r *Report) growth(name string, a, b int64, why string) {
	switch {
	case a > 0:
		r.Metrics[name] = percent(b-a, a)
	case b == 0:
		r.Metrics[name] = 0
	default:
		r.Unavailable[name] = why
	}
}

// Threshold is a limit on one metric: the condition that fails a check, such as
// `packages.changed>0` or `size.growth>5%`.
type Threshold struct {
	Metric string
	// Op is >, >=, <, <=, == or !=.
	Op    string
	Limit float64
	// Text is the expression as written (spaces trimmed), for messages.
	Text string
}

func (t Threshold) String() string { return t.Text }

// ParseThreshold reads METRIC OP VALUE, such as `files.added>200` or `size.growth >= 5%`:
// OP is one of >, >=, <, <=, ==, !=; VALUE is a number, which may end in % for a percentage
// metric and in a size unit (B, kB, KiB, MB, MiB, GB, GiB, TB, TiB) for a bytes metric.
func ParseThreshold(s string) (Threshold, error) {
	text := strings.TrimSpace(s)
	i := strings.IndexAny(text, "<>=!")
	if i < 0 {
		return Threshold{}, fmt.Errorf("threshold %q: want METRIC OP VALUE, such as packages.changed>0 or size.growth>5%%", s)
	}
	t := Threshold{Metric: strings.TrimSpace(text[:i]), Text: text}
	rest := text[i:]
	// Longest first, so that ">=" is not read as ">".
	ops := []string{">=", "<=", "==", "!=", ">", "<"}
	for _, op := range ops {
		if strings.HasPrefix(rest, op) {
			t.Op = op
			break
		}
	}
	if t.Op == "" {
		return Threshold{}, fmt.Errorf("threshold %q: unknown operator at %q: use one of %s", s, rest, strings.Join(ops, " "))
	}
	m, ok := metricByName(t.Metric)
	if !ok {
		return Threshold{}, unknownMetric(s, t.Metric)
	}
	value := strings.TrimSpace(rest[len(t.Op):])
	limit, err := parseLimit(value, m)
	if err != nil {
		return Threshold{}, fmt.Errorf("threshold %q: %w", s, err)
	}
	t.Limit = limit
	return t, nil
}

// ParseThresholds reads each of ss, and reports every one that fails, not just the first.
func ParseThresholds(ss []string) ([]Threshold, error) {
	var ts []Threshold
	var errs []error
	for _, s := range ss {
		t, err := ParseThreshold(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ts = append(ts, t)
	}
	return ts, errors.Join(errs...)
}

func unknownMetric(s, name string) error {
	names := metricNames()
	hint := ""
	if m := suggest(name, names); m != "" {
		hint = fmt.Sprintf("did you mean %q? ", m)
	}
	if name == "" {
		return fmt.Errorf("threshold %q: no metric before the operator; %sthe metrics are %s", s, hint, strings.Join(names, ", "))
	}
	return fmt.Errorf("threshold %q: unknown metric %q; %sthe metrics are %s", s, name, hint, strings.Join(names, ", "))
}

// parseLimit reads a threshold's value for metric m.
func parseLimit(value string, m Metric) (float64, error) {
	if value == "" {
		return 0, errors.New("no value after the operator")
	}
	number, factor := value, 1.0
	switch m.Unit {
	case UnitPercent:
		number = strings.TrimSpace(strings.TrimSuffix(value, "%"))
	case UnitBytes:
		// The suffixes a size takes, B last since the others end in it.
		units := []struct {
			suffix string
			factor float64
		}{
			{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
			{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
			{"B", 1},
		}
		for _, u := range units {
			if n, ok := strings.CutSuffix(value, u.suffix); ok {
				number, factor = strings.TrimSpace(n), u.factor
				break
			}
		}
	default:
		if strings.HasSuffix(value, "%") {
			return 0, fmt.Errorf("%s is a count, not a percentage: write a number of %s (percentages: size.growth, outputs.growth)", m.Name, strings.SplitN(m.Name, ".", 2)[0])
		}
	}
	v, err := strconv.ParseFloat(number, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		want := "a number"
		switch m.Unit {
		case UnitPercent:
			want = "a number, or a percentage such as 5%"
		case UnitBytes:
			want = "a number of bytes, or a size such as 50MiB"
		}
		return 0, fmt.Errorf("%q is not %s", value, want)
	}
	return v * factor, nil
}

// crossed says whether value crosses t.
func (t Threshold) crossed(value float64) bool {
	switch t.Op {
	case ">":
		return value > t.Limit
	case ">=":
		return value >= t.Limit
	case "<":
		return value < t.Limit
	case "<=":
		return value <= t.Limit
	case "==":
		return value == t.Limit
	case "!=":
		return value != t.Limit
	}
	return false
}

// Crossed is a threshold that a report crossed, with the metric's value.
type Crossed struct {
	Threshold Threshold
	Metric    string
	Value     float64
	Limit     float64
}

// String says which threshold was crossed and by what: "setuid.added>0: setuid.added is 1,
// the limit 0".
func (c Crossed) String() string {
	m, _ := metricByName(c.Metric)
	return fmt.Sprintf("%s: %s is %s, the limit %s", c.Threshold, c.Metric, formatValue(m, c.Value), formatValue(m, c.Limit))
}

// ErrUnavailable marks a threshold on a metric the report could not compute.
var ErrUnavailable = errors.New("metric unavailable")

// Check returns the thresholds r crosses, in the order given. A threshold on a metric r could
// not compute (a build without a file inventory) is an error wrapping ErrUnavailable, never a
// pass: a gate that cannot look must not say all is well.
func (r *Report) Check(ts []Threshold) ([]Crossed, error) {
	var crossed []Crossed
	var errs []error
	for _, t := range ts {
		v, ok := r.Metrics[t.Metric]
		if !ok {
			why := r.Unavailable[t.Metric]
			if why == "" {
				why = "the report has no such metric"
			}
			errs = append(errs, fmt.Errorf("threshold %s: %w: %s", t, ErrUnavailable, why))
			continue
		}
		if t.crossed(v) {
			crossed = append(crossed, Crossed{Threshold: t, Metric: t.Metric, Value: v, Limit: t.Limit})
		}
	}
	return crossed, errors.Join(errs...)
}

// formatValue writes a metric's value in its unit: a count as an integer, a percentage with %,
// bytes as a number of bytes with a readable size beside it.
func formatValue(m Metric, v float64) string {
	switch m.Unit {
	case UnitPercent:
		return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) + "%"
	case UnitBytes:
		if math.Abs(v) >= 1024 {
			return fmt.Sprintf("%s bytes (%s)", strconv.FormatFloat(v, 'f', -1, 64), signedBytes(int64(v)))
		}
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// suggest returns the candidate closest to word (suggest.Closest), or the one candidate that
// ends in "."+word ("changed" for "packages.changed": a missing prefix), or "".
func suggest(word string, candidates []string) string {
	if best := isuggest.Closest(word, candidates); best != "" {
		return best
	}
	lw := strings.ToLower(word)
	var suffixed []string
	for _, c := range candidates {
		if strings.HasSuffix(c, "."+lw) {
			suffixed = append(suffixed, c)
		}
	}
	if len(suffixed) == 1 {
		return suffixed[0]
	}
	return ""
}
