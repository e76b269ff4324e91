package metrics

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// at is 2025-06-01 12:00:00 UTC plus offset: Unix 1748779200.
func at(offset time.Duration) time.Time {
	return time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).Add(offset)
}

// succeeded is a build as the CLI fills it from bake's manifest: pipeline steps, each recipe step
// a step of its own (one of the two restored from a checkpoint), and the outputs.
func succeeded() Build {
	return Build{
		Recipe:   "web",
		Success:  true,
		Started:  at(0),
		Finished: at(754*time.Second + 250*time.Millisecond),
		Steps: []Step{
			{"fetch", 1.5}, {"boot", 20.25},
			{"provision[0] shell", 0}, {"provision[1] file", 19.875},
			{"convert", 400}, {"record", 0.000125},
		},
		Artifacts: []Artifact{
			{File: "web.qcow2", Format: "qcow2", Bytes: 1 << 30},
			{File: "web.raw", Format: "raw", Bytes: 10737418240},
			{File: "web-minimal.raw", Format: "raw", Bytes: 2147483648},
		},
		RecipeSteps: 2, Restored: 1,
	}
}

// failed is a build that stopped in boot: no manifest, so no artifacts, but a duration and the
// steps that ran.
func failed() Build {
	return Build{
		Recipe:   "db",
		Started:  at(time.Second),
		Finished: at(61*time.Second + 500*time.Millisecond),
		Steps:    []Step{{"fetch", 0.5}, {"boot", 60}},
	}
}

func TestWrite(t *testing.T) {
	escaped := failed()
	escaped.Recipe = "a\\b\"c\nd\te ü"
	escaped.Steps = []Step{{`provision[0] shell "x\y"`, 2}}
	escaped.Artifacts = []Artifact{{File: "new\nline.raw", Format: "raw", Bytes: 0}}

	tests := []struct {
		name   string
		builds []Build
		want   string
	}{
		{
			name:   "success",
			builds: []Build{succeeded()},
			want: `# HELP ingot_build_success Whether the last build of the recipe succeeded (1) or failed (0).
# TYPE ingot_build_success gauge
ingot_build_success{recipe="web"} 1
# HELP ingot_build_duration_seconds Wall-clock seconds the last build of the recipe took, to success or failure.
# TYPE ingot_build_duration_seconds gauge
# UNIT ingot_build_duration_seconds seconds
ingot_build_duration_seconds{recipe="web"} 754.25
# HELP ingot_build_timestamp_seconds Unix time the last build of the recipe finished; alert on its age to find builds that stopped running.
# TYPE ingot_build_timestamp_seconds gauge
# UNIT ingot_build_timestamp_seconds seconds
ingot_build_timestamp_seconds{recipe="web"} 1748779954.25
# HELP ingot_step_duration_seconds Seconds each step of the last build took, the failed step included; each recipe step is a step of its own named provision[N] KIND.
# TYPE ingot_step_duration_seconds gauge
# UNIT ingot_step_duration_seconds seconds
ingot_step_duration_seconds{recipe="web",step="fetch"} 1.5
ingot_step_duration_seconds{recipe="web",step="boot"} 20.25
ingot_step_duration_seconds{recipe="web",step="provision[0] shell"} 0
ingot_step_duration_seconds{recipe="web",step="provision[1] file"} 19.875
ingot_step_duration_seconds{recipe="web",step="convert"} 400
ingot_step_duration_seconds{recipe="web",step="record"} 0.000125
# HELP ingot_checkpoint_hit_ratio Share of the recipe steps of the last build restored from a checkpoint instead of run, 0 to 1; 1 when the build was up to date.
# TYPE ingot_checkpoint_hit_ratio gauge
ingot_checkpoint_hit_ratio{recipe="web"} 0.5
# HELP ingot_artifact_bytes Size in bytes of each file the last build of the recipe produced.
# TYPE ingot_artifact_bytes gauge
# UNIT ingot_artifact_bytes bytes
ingot_artifact_bytes{recipe="web",format="qcow2",file="web.qcow2"} 1073741824
ingot_artifact_bytes{recipe="web",format="raw",file="web.raw"} 10737418240
ingot_artifact_bytes{recipe="web",format="raw",file="web-minimal.raw"} 2147483648
# EOF
`,
		},
		{
			name:   "failed",
			builds: []Build{failed()},
			// No ingot_artifact_bytes family at all: a family without samples says nothing.
			want: `# HELP ingot_build_success Whether the last build of the recipe succeeded (1) or failed (0).
# TYPE ingot_build_success gauge
ingot_build_success{recipe="db"} 0
# HELP ingot_build_duration_seconds Wall-clock seconds the last build of the recipe took, to success or failure.
# TYPE ingot_build_duration_seconds gauge
# UNIT ingot_build_duration_seconds seconds
ingot_build_duration_seconds{recipe="db"} 60.5
# HELP ingot_build_timestamp_seconds Unix time the last build of the recipe finished; alert on its age to find builds that stopped running.
# TYPE ingot_build_timestamp_seconds gauge
# UNIT ingot_build_timestamp_seconds seconds
ingot_build_timestamp_seconds{recipe="db"} 1748779261.5
# HELP ingot_step_duration_seconds Seconds each step of the last build took, the failed step included; each recipe step is a step of its own named provision[N] KIND.
# TYPE ingot_step_duration_seconds gauge
# UNIT ingot_step_duration_seconds seconds
ingot_step_duration_seconds{recipe="db",step="fetch"} 0.5
ingot_step_duration_seconds{recipe="db",step="boot"} 60
# EOF
`,
		},
		{
			name: "two recipes, sorted and grouped by family",
			builds: []Build{
				{Recipe: "web", Success: true, Started: at(0), Finished: at(2 * time.Second),
					Steps: []Step{{"boot", 2}}, Artifacts: []Artifact{{File: "web.qcow2", Format: "qcow2", Bytes: 7}}},
				{Recipe: "db", Started: at(0), Finished: at(time.Second), Steps: []Step{{"fetch", 1}}},
			},
			want: `# HELP ingot_build_success Whether the last build of the recipe succeeded (1) or failed (0).
# TYPE ingot_build_success gauge
ingot_build_success{recipe="db"} 0
ingot_build_success{recipe="web"} 1
# HELP ingot_build_duration_seconds Wall-clock seconds the last build of the recipe took, to success or failure.
# TYPE ingot_build_duration_seconds gauge
# UNIT ingot_build_duration_seconds seconds
ingot_build_duration_seconds{recipe="db"} 1
ingot_build_duration_seconds{recipe="web"} 2
# HELP ingot_build_timestamp_seconds Unix time the last build of the recipe finished; alert on its age to find builds that stopped running.
# TYPE ingot_build_timestamp_seconds gauge
# UNIT ingot_build_timestamp_seconds seconds
ingot_build_timestamp_seconds{recipe="db"} 1748779201
ingot_build_timestamp_seconds{recipe="web"} 1748779202
# HELP ingot_step_duration_seconds Seconds each step of the last build took, the failed step included; each recipe step is a step of its own named provision[N] KIND.
# TYPE ingot_step_duration_seconds gauge
# UNIT ingot_step_duration_seconds seconds
ingot_step_duration_seconds{recipe="db",step="fetch"} 1
ingot_step_duration_seconds{recipe="web",step="boot"} 2
# HELP ingot_artifact_bytes Size in bytes of each file the last build of the recipe produced.
# TYPE ingot_artifact_bytes gauge
# UNIT ingot_artifact_bytes bytes
ingot_artifact_bytes{recipe="web",format="qcow2",file="web.qcow2"} 7
# EOF
`,
		},
		{
			name:   "label escaping",
			builds: []Build{escaped},
			// Backslash, quote and newline are escaped; the tab and the ü stay as they are.
			want: `# HELP ingot_build_success Whether the last build of the recipe succeeded (1) or failed (0).
# TYPE ingot_build_success gauge
ingot_build_success{recipe="a\\b\"c\nd	e ü"} 0
# HELP ingot_build_duration_seconds Wall-clock seconds the last build of the recipe took, to success or failure.
# TYPE ingot_build_duration_seconds gauge
# UNIT ingot_build_duration_seconds seconds
ingot_build_duration_seconds{recipe="a\\b\"c\nd	e ü"} 60.5
# HELP ingot_build_timestamp_seconds Unix time the last build of the recipe finished; alert on its age to find builds that stopped running.
# TYPE ingot_build_timestamp_seconds gauge
# UNIT ingot_build_timestamp_seconds seconds
ingot_build_timestamp_seconds{recipe="a\\b\"c\nd	e ü"} 1748779261.5
# HELP ingot_step_duration_seconds Seconds each step of the last build took, the failed step included; each recipe step is a step of its own named provision[N] KIND.
# TYPE ingot_step_duration_seconds gauge
# UNIT ingot_step_duration_seconds seconds
ingot_step_duration_seconds{recipe="a\\b\"c\nd	e ü",step="provision[0] shell \"x\\y\""} 2
# HELP ingot_artifact_bytes Size in bytes of each file the last build of the recipe produced.
# TYPE ingot_artifact_bytes gauge
# UNIT ingot_artifact_bytes bytes
ingot_artifact_bytes{recipe="a\\b\"c\nd	e ü",format="raw",file="new\nline.raw"} 0
# EOF
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "ingot.prom")
			if err := Write(path, tt.builds...); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Write wrote:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestWriteDoesNotSortCallersSlice: Write sorts the builds it writes, not the caller's.
func TestWriteDoesNotSortCallersSlice(t *testing.T) {
	builds := []Build{succeeded(), failed()}
	if err := Write(filepath.Join(t.TempDir(), "ingot.prom"), builds...); err != nil {
		t.Fatal(err)
	}
	if builds[0].Recipe != "web" || builds[1].Recipe != "db" {
		t.Errorf("Write reordered its argument: %q, %q", builds[0].Recipe, builds[1].Recipe)
	}
}

// TestWriteRefuses checks that builds which would make an invalid exposition are refused, and that
// the file written before stays as it was.
func TestWriteRefuses(t *testing.T) {
	with := func(change func(*Build)) []Build {
		b := succeeded()
		change(&b)
		return []Build{b}
	}
	tests := []struct {
		name   string
		builds []Build
		want   string
	}{
		{"no builds", nil, "no builds"},
		{"empty recipe", with(func(b *Build) { b.Recipe = "" }), "empty recipe"},
		{"recipe not UTF-8", with(func(b *Build) { b.Recipe = "w\xffb" }), "not UTF-8"},
		{"recipe twice", []Build{succeeded(), failed(), succeeded()}, "recipe written twice"},
		{"no finish time", with(func(b *Build) { b.Finished = time.Time{} }), "start and finish times"},
		{"finished before start", with(func(b *Build) { b.Finished = b.Started.Add(-time.Second) }), "before it started"},
		{"step twice", with(func(b *Build) { b.Steps = append(b.Steps, Step{"boot", 1}) }), `step "boot" twice`},
		{"empty step", with(func(b *Build) { b.Steps = []Step{{"", 1}} }), "empty step"},
		{"negative step", with(func(b *Build) { b.Steps = []Step{{"boot", -1}} }), "-1 seconds"},
		{"artifact twice", with(func(b *Build) { b.Artifacts = append(b.Artifacts, b.Artifacts[0]) }), `artifact "web.qcow2" twice`},
		{"artifact without format", with(func(b *Build) { b.Artifacts[0].Format = "" }), "empty format"},
		{"negative size", with(func(b *Build) { b.Artifacts[0].Bytes = -1 }), "-1 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "ingot.prom")
			if err := Write(path, failed()); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			err = Write(path, tt.builds...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Write: %v, want an error containing %q", err, tt.want)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("a refused Write changed the file:\n%s", after)
			}
		})
	}
}

// TestWriteLeavesNoPartialFile: when the file cannot be put in place, Write says so and leaves
// nothing behind, not even its temporary file.
func TestWriteLeavesNoPartialFile(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the path to Write
	}{
		{"path is a directory", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "ingot.prom")
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(p, "keep"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"parent is missing", func(t *testing.T, dir string) string {
			return filepath.Join(dir, "missing", "ingot.prom")
		}},
		{"parent is a file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "file")
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(p, "ingot.prom")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := tt.setup(t, dir)
			before := tree(t, dir)
			if err := Write(path, succeeded()); err == nil {
				t.Fatalf("Write(%s) succeeded", path)
			}
			if after := tree(t, dir); !slices.Equal(before, after) {
				t.Errorf("a failed Write left files behind:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

// tree lists every path under dir.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// TestWriteMode: a new file is 0644 even under a strict umask, because the textfile collector runs
// as another user; an existing file keeps the mode its owner gave it. Not parallel: the umask
// belongs to the whole process.
func TestWriteMode(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })

	tests := []struct {
		name     string
		existing os.FileMode // 0: no file before
		want     os.FileMode
	}{
		{"new file", 0, 0o644},
		{"existing file", 0o640, 0o640},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ingot.prom")
			if tt.existing != 0 {
				if err := os.WriteFile(path, nil, tt.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.existing); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			if err := Write(path, succeeded()); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Mode().Perm(); got != tt.want {
				t.Errorf("mode %04o, want %04o", got, tt.want)
			}
		})
	}
}

// TestHelpTexts holds the families to what keeps the file readable as both OpenMetrics and text
// format 0.0.4 (see the package doc).
func TestHelpTexts(t *testing.T) {
	for _, f := range families() {
		if strings.ContainsAny(f.help, "\\\"\n") || f.help == "" {
			t.Errorf("%s: HELP %q is empty or has a backslash, quote or newline, which the two formats escape differently", f.name, f.help)
		}
		if f.unit != "" && !strings.HasSuffix(f.name, "_"+f.unit) {
			t.Errorf("%s: OpenMetrics wants a name that ends in its unit, _%s", f.name, f.unit)
		}
	}
}

// TestPromtool runs Prometheus's own parser and linter, `promtool check metrics`, on what Write
// wrote. It parses text format 0.0.4 with the parser node_exporter's textfile collector uses, and
// lints names and HELP; any word it prints (a lint warning too) fails the test.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is needed by this test: %v; install it with: apt-get install prometheus", err)
	}
	escaped := failed()
	escaped.Recipe = "a\\b\"c\nd\te ü"
	escaped.Artifacts = []Artifact{{File: "new\nline.raw", Format: "raw", Bytes: 3}}

	tests := []struct {
		name   string
		builds []Build
	}{
		{"success", []Build{succeeded()}},
		{"failed", []Build{failed()}},
		{"both", []Build{succeeded(), failed()}},
		{"label escaping", []Build{escaped, succeeded()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "ingot.prom")
			if err := Write(path, tt.builds...); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
			cmd.Stdin = f
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("%s < %s: %v", cmd, path, err)
			}
			if err != nil || len(out) > 0 {
				text, _ := os.ReadFile(path)
				t.Errorf("%s < %s: %v\n%s\nthe file:\n%s", cmd, path, err, out, text)
			}
		})
	}
}
