package drift

import (
	"errors"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/manifest"
)

func TestParseThreshold(t *testing.T) {
	tests := []struct {
		in     string
		metric string
		op     string
		limit  float64
	}{
		{"packages.changed>0", "packages.changed", ">", 0},
		{"files.added>200", "files.added", ">", 200},
		{"size.growth>5%", "size.growth", ">", 5},
		{"size.growth>5", "size.growth", ">", 5},
		{"size.growth>=2.5%", "size.growth", ">=", 2.5},
		{"setuid.added>0", "setuid.added", ">", 0},
		{" files.removed <= 3 ", "files.removed", "<=", 3},
		{"packages.downgraded==0", "packages.downgraded", "==", 0},
		{"packages.upgraded!=0", "packages.upgraded", "!=", 0},
		{"size.bytes>50MiB", "size.bytes", ">", 50 << 20},
		{"size.bytes>1GB", "size.bytes", ">", 1e9},
		{"size.bytes < -100 KiB", "size.bytes", "<", -100 << 10},
		{"outputs.bytes>4096", "outputs.bytes", ">", 4096},
		{"outputs.growth<-10%", "outputs.growth", "<", -10},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			th, err := ParseThreshold(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if th.Metric != tt.metric || th.Op != tt.op || th.Limit != tt.limit {
				t.Errorf("got %+v, want %s %s %v", th, tt.metric, tt.op, tt.limit)
			}
			if th.String() != strings.TrimSpace(tt.in) {
				t.Errorf("String() = %q", th.String())
			}
		})
	}
}

func TestParseThresholdErrors(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"packages.changed", []string{"want METRIC OP VALUE"}},
		{"packages.chaged>0", []string{`unknown metric "packages.chaged"`, `did you mean "packages.changed"?`, "the metrics are packages.added, "}},
		{"upgraded>0", []string{`did you mean "packages.upgraded"?`}},
		{"changed>0", []string{"the metrics are packages.added"}}, // files.changed or packages.changed: no guess
		{"files.add>1", []string{`did you mean "files.added"?`}},
		{"frobs>1", []string{`unknown metric "frobs"`, "setuid.added"}},
		{">1", []string{"no metric before the operator"}},
		{"files.added=>1", []string{`unknown operator at "=>1"`}},
		{"files.added=1", []string{`unknown operator at "=1"`}},
		{"files.added>", []string{"no value after the operator"}},
		{"files.added>many", []string{`"many" is not a number`}},
		{"files.added>5%", []string{"files.added is a count, not a percentage"}},
		{"size.growth>5%%", []string{`"5%%" is not a number, or a percentage`}},
		{"size.bytes>5 parsecs", []string{`is not a number of bytes, or a size such as 50MiB`}},
		{"size.bytes>NaN", []string{"is not a number of bytes"}},
		{"size.growth>Inf", []string{"is not a number, or a percentage"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseThreshold(tt.in)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// ParseThresholds reports every bad one.
	_, err := ParseThresholds([]string{"files.added>1", "nope>1", "size.growth>x"})
	if err == nil || !strings.Contains(err.Error(), "nope") || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("ParseThresholds: %v", err)
	}
}

func TestCheck(t *testing.T) {
	r := &Report{Metrics: map[string]float64{
		"packages.changed": 3, "files.added": 200, "size.growth": 5.5, "setuid.added": 0, "size.bytes": 3 << 20,
	}, Unavailable: map[string]string{"files.removed": "a has no file inventory"}}
	tests := []struct {
		expr    string
		crossed bool
	}{
		{"packages.changed>0", true},
		{"packages.changed>3", false},
		{"packages.changed>=3", true},
		{"packages.changed<3", false},
		{"packages.changed<=3", true},
		{"packages.changed==3", true},
		{"packages.changed!=3", false},
		{"files.added>200", false},
		{"files.added>=200", true},
		{"size.growth>5%", true},
		{"size.growth>5.5%", false},
		{"setuid.added>0", false},
		{"size.bytes>2MiB", true},
		{"size.bytes>3MiB", false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			th, err := ParseThreshold(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Check([]Threshold{th})
			if err != nil {
				t.Fatal(err)
			}
			if (len(got) == 1) != tt.crossed {
				t.Fatalf("crossed %v, want %v", got, tt.crossed)
			}
			if tt.crossed && (got[0].Metric != th.Metric || got[0].Value != r.Metrics[th.Metric] || got[0].Limit != th.Limit) {
				t.Errorf("crossed %+v", got[0])
			}
		})
	}

	th, _ := ParseThresholds([]string{"size.growth>5%", "packages.changed>0", "size.bytes>1MiB"})
	got, _ := r.Check(th)
	var lines []string
	for _, c := range got {
		lines = append(lines, c.String())
	}
	want := []string{
		"size.growth>5%: size.growth is 5.5%, the limit 5%",
		"packages.changed>0: packages.changed is 3, the limit 0",
		"size.bytes>1MiB: size.bytes is 3145728 bytes (+3.0 MiB), the limit 1048576 bytes (+1.0 MiB)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("messages\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}

	// A threshold on a metric the report could not compute is an error, never a pass.
	th, _ = ParseThresholds([]string{"files.removed>10", "packages.changed>100"})
	got, err := r.Check(th)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "files.removed>10: metric unavailable: a has no file inventory") {
		t.Errorf("unavailable metric: crossed %v, err %v", got, err)
	}
}

// A report without inventories makes every file threshold an error, end to end.
func TestCheckWithoutInventory(t *testing.T) {
	a := Side{Label: "old", Manifest: &manifest.Manifest{}}
	b := Side{Label: "new", Manifest: &manifest.Manifest{}, Inventory: []manifest.Entry{}}
	r := Compare(a, b, Options{})
	for _, m := range Metrics() {
		th, err := ParseThreshold(m.Name + ">0")
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Check([]Threshold{th})
		if m.NeedsInventory != errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v", m.Name, err)
		}
	}
}
