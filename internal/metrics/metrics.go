// Package metrics writes the service-level indicators of builds (issue 19) to a file that
// node_exporter's textfile collector serves to Prometheus: `ingot build --metrics FILE` calls
// Write once per run, with every build of the run, successful or not.
//
// # Series
//
// Each series carries the label recipe, so the builds of several recipes (`ingot build a.yaml
// b.yaml -j 2`) share one file, and all are gauges: they describe the last build of a recipe,
// not a running count.
//
//	ingot_build_success{recipe}                   1 if the build succeeded, else 0
//	ingot_build_duration_seconds{recipe}          start to success or failure
//	ingot_build_timestamp_seconds{recipe}         Unix time the build finished
//	ingot_step_duration_seconds{recipe,step}      each step that ran, the failed one included
//	ingot_artifact_bytes{recipe,format,file}      each file produced
//
// ingot_build_timestamp_seconds exists so that a build which stopped running can be alerted on
// (time() - ingot_build_timestamp_seconds > …): the textfile collector drops the timestamps of
// samples (see below), and its node_textfile_mtime_seconds tells when the file was written, not
// which recipe it was for. Provisioner steps are series of their own, step="provision[0] shell",
// which break down step="provision": summing every step of a build counts them twice.
// ingot_artifact_bytes has a file label as well as format because one recipe can make two files
// of one format (web.raw and web-minimal.raw are both raw). The cache hit ratio waits for
// checkpoints: until ingot caches builds there is nothing to count.
//
// # Format
//
// The file is OpenMetrics 1.0 text (application/openmetrics-text) kept to the subset that is also
// Prometheus text format 0.0.4, because its readers do not agree on one format:
// node_exporter's textfile collector and `promtool check metrics` both parse 0.0.4
// (expfmt.TextParser in prometheus/common), while OpenMetrics parsers require the `# EOF` line
// that 0.0.4 does not have. What keeps the file valid for both:
//   - `# EOF` ends it, as OpenMetrics requires; to a 0.0.4 parser it is a comment (a '#' line
//     whose second token is neither HELP nor TYPE), and so is `# UNIT`.
//   - Gauges only. The formats disagree on counters (OpenMetrics names the family without
//     _total and its samples with it; 0.0.4 puts _total on both), not on gauges.
//   - No sample timestamps: the textfile collector refuses the whole file when a sample has one
//     (and OpenMetrics writes them in seconds, 0.0.4 in milliseconds).
//   - HELP texts contain neither backslash nor double quote: OpenMetrics escapes '"' in HELP,
//     0.0.4 does not, so only text without them reads the same in both.
//   - Label values escape backslash, double quote and newline, which is what both formats do;
//     a value that is not UTF-8 is refused, as both parsers refuse it.
//   - Each family is written once, its samples together and no blank line: OpenMetrics
//     requires it, and a 0.0.4 parser rejects a second HELP or TYPE line for one name.
//
// A name with a unit ends in the base unit (seconds, bytes), as OpenMetrics and promtool's lint ask.
package metrics

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/renameio/v2"
)

// Build is what one build of one recipe leaves to measure. The CLI fills it from bake's manifest
// when the build succeeded, and from what it timed itself when it failed (a failed build has no
// manifest): this package does not import bake, so the two cases look alike here.
type Build struct {
	// Recipe is the value of the recipe label: the recipe's name, unique within one Write.
	Recipe string
	// Success is whether the build made its outputs.
	Success bool
	// Started and Finished bound the build; Finished is also ingot_build_timestamp_seconds.
	Started, Finished time.Time
	// Steps are the steps that ran, in order, the failed one included: pipeline steps (fetch,
	// boot, …) and provisioners ("provision[0] shell"). Names are unique within a build.
	Steps []Step
	// Artifacts are the files the build produced; none when it failed.
	Artifacts []Artifact
	// RecipeSteps counts the recipe's steps the build got to, and Restored those of them whose
	// result came from a checkpoint; UpToDate says the build had nothing to do.
	RecipeSteps, Restored int
	UpToDate              bool
}

// Step is how long one step of a build took.
type Step struct {
	Name    string
	Seconds float64
}

// Artifact is one file a build produced.
type Artifact struct {
	// File is the file's name in the output directory, unique within a build.
	File string
	// Format is what the file is: qcow2, raw, raw.zst, bmap, ova, download…
	Format string
	Bytes  int64
}

// families are the metric families, in the order they are written. Their HELP texts must not
// contain a backslash or a double quote (see the package doc); TestHelpTexts checks it.
func families() []family {
	return []family{
		{"ingot_build_success", "", "Whether the last build of the recipe succeeded (1) or failed (0).",
			func(b *Build) []sample { return []sample{{nil, boolValue(b.Success)}} }},
		{"ingot_build_duration_seconds", "seconds", "Wall-clock seconds the last build of the recipe took, to success or failure.",
			func(b *Build) []sample { return []sample{{nil, floatValue(b.Finished.Sub(b.Started).Seconds())}} }},
		{"ingot_build_timestamp_seconds", "seconds", "Unix time the last build of the recipe finished; alert on its age to find builds that stopped running.",
			func(b *Build) []sample { return []sample{{nil, floatValue(unixSeconds(b.Finished))}} }},
		{"ingot_step_duration_seconds", "seconds", "Seconds each step of the last build took, the failed step included; each recipe step is a step of its own named provision[N] KIND.",
			func(b *Build) []sample {
				var s []sample
				for _, st := range b.Steps {
					s = append(s, sample{[]label{{"step", st.Name}}, floatValue(st.Seconds)})
				}
				return s
			}},
		{"ingot_checkpoint_hit_ratio", "", "Share of the recipe steps of the last build restored from a checkpoint instead of run, 0 to 1; 1 when the build was up to date.",
			func(b *Build) []sample {
				switch {
				case b.UpToDate:
					return []sample{{nil, "1"}}
				case b.RecipeSteps == 0:
					return nil
				}
				return []sample{{nil, floatValue(float64(b.Restored) / float64(b.RecipeSteps))}}
			}},
		{"ingot_artifact_bytes", "bytes", "Size in bytes of each file the last build of the recipe produced.",
			func(b *Build) []sample {
				var s []sample
				for _, a := range b.Artifacts {
					s = append(s, sample{[]label{{"format", a.Format}, {"file", a.File}}, strconv.FormatInt(a.Bytes, 10)})
				}
				return s
			}},
	}
}

// family is one metric family: its metadata and how to get its samples from a build.
type family struct {
	name    string
	unit    string // "" for none; otherwise the suffix the name ends with
	help    string
	samples func(*Build) []sample
}

// sample is one line of a family, less the recipe label that every line has.
type sample struct {
	labels []label
	value  string
}

type label struct{ name, value string }

// Write writes the metrics of builds to path, atomically: the file is written beside path under a
// name that does not end in .prom, then renamed over it, so the textfile collector (which reads
// *.prom on every scrape) never sees half a file, and a failed Write leaves the previous file as it
// was. A new file is made 0644 whatever the umask, because the collector usually runs as another
// user (prometheus); an existing file keeps its mode, which its owner may have chosen.
//
// Builds are written in the order of their recipe names, so that one set of builds always gives
// the same file whatever order a parallel run finished them in.
func Write(path string, builds ...Build) error {
	text, err := encode(builds)
	if err != nil {
		return fmt.Errorf("metrics %s: %w", path, err)
	}
	f, err := renameio.NewPendingFile(path, renameio.WithStaticPermissions(0o644), renameio.WithExistingPermissions())
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer f.Cleanup() // removes the temporary file unless it was renamed
	if _, err := f.Write(text); err != nil {
		return fmt.Errorf("metrics: write %s: %w", f.Name(), err)
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("metrics: replace %s: %w", path, err)
	}
	return nil
}

// encode renders builds as the exposition Write writes, after checking them all.
func encode(builds []Build) ([]byte, error) {
	if err := check(builds); err != nil {
		return nil, err
	}
	sorted := slices.Clone(builds)
	slices.SortFunc(sorted, func(a, b Build) int { return cmp.Compare(a.Recipe, b.Recipe) })

	var w strings.Builder
	for _, f := range families() {
		var lines []string
		for i := range sorted {
			for _, s := range f.samples(&sorted[i]) {
				lines = append(lines, f.name+labelSet(append([]label{{"recipe", sorted[i].Recipe}}, s.labels...))+" "+s.value)
			}
		}
		if len(lines) == 0 {
			continue // a family without samples says nothing; 0.0.4 parsers drop it anyway
		}
		fmt.Fprintf(&w, "# HELP %s %s\n# TYPE %s gauge\n", f.name, f.help, f.name)
		if f.unit != "" {
			fmt.Fprintf(&w, "# UNIT %s %s\n", f.name, f.unit)
		}
		for _, l := range lines {
			w.WriteString(l + "\n")
		}
	}
	w.WriteString("# EOF\n")
	return []byte(w.String()), nil
}

// check refuses what would make an invalid or ambiguous exposition: a series twice (both formats
// forbid it, and the collector would fail the scrape), a label value that is empty (Prometheus
// reads it as no label) or not UTF-8, and times and sizes that cannot be. It reports every problem
// at once.
func check(builds []Build) error {
	if len(builds) == 0 {
		return errors.New("no builds to write")
	}
	var errs []error
	recipes := map[string]bool{}
	for i, b := range builds {
		where := fmt.Sprintf("build %d (recipe %q)", i, b.Recipe)
		if err := labelValue("recipe", b.Recipe); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		} else if recipes[b.Recipe] {
			errs = append(errs, fmt.Errorf("%s: recipe written twice: one run writes each recipe once", where))
		}
		recipes[b.Recipe] = true
		switch {
		case b.Started.IsZero() || b.Finished.IsZero():
			errs = append(errs, fmt.Errorf("%s: start and finish times are both needed", where))
		case b.Finished.Before(b.Started):
			errs = append(errs, fmt.Errorf("%s: finished (%s) before it started (%s)", where, b.Finished, b.Started))
		}
		steps := map[string]bool{}
		for j, s := range b.Steps {
			if err := labelValue("step", s.Name); err != nil {
				errs = append(errs, fmt.Errorf("%s: step %d: %w", where, j, err))
			} else if steps[s.Name] {
				errs = append(errs, fmt.Errorf("%s: step %q twice", where, s.Name))
			}
			steps[s.Name] = true
			if s.Seconds < 0 || math.IsNaN(s.Seconds) || math.IsInf(s.Seconds, 0) {
				errs = append(errs, fmt.Errorf("%s: step %q: %v seconds", where, s.Name, s.Seconds))
			}
		}
		files := map[string]bool{}
		for j, a := range b.Artifacts {
			if err := labelValue("file", a.File); err != nil {
				errs = append(errs, fmt.Errorf("%s: artifact %d: %w", where, j, err))
			} else if files[a.File] {
				errs = append(errs, fmt.Errorf("%s: artifact %q twice", where, a.File))
			}
			files[a.File] = true
			if err := labelValue("format", a.Format); err != nil {
				errs = append(errs, fmt.Errorf("%s: artifact %q: %w", where, a.File, err))
			}
			if a.Bytes < 0 {
				errs = append(errs, fmt.Errorf("%s: artifact %q: %d bytes", where, a.File, a.Bytes))
			}
		}
	}
	return errors.Join(errs...)
}

func labelValue(name, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("empty %s", name)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s %q is not UTF-8", name, v)
	}
	return nil
}

// labelSet renders {a="x",b="y"}, in the order given.
func labelSet(ls []label) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.name + `="`)
		escapeLabelValue(&b, l.value)
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// escapeLabelValue escapes v the way both OpenMetrics and text format 0.0.4 read a label value:
// backslash, double quote and newline, and nothing else (both parsers refuse any other escape,
// such as \t, so a tab stays a tab).
func escapeLabelValue(b *strings.Builder, v string) {
	for _, r := range v {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
}

func boolValue(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// floatValue writes v in full without an exponent (1748779200.5, not 1.7487792005e+09), which
// both formats accept and a person reading the file takes in at a glance.
func floatValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// unixSeconds is t as Unix time in seconds, to the microsecond a float64 keeps at today's dates.
func unixSeconds(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }
