package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// logLines decodes JSON log output into one map per line.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		delete(m, "time")
		delete(m, "level")
		out = append(out, m)
	}
	buf.Reset()
	return out
}

func TestLogReporter(t *testing.T) {
	var buf bytes.Buffer
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := NewLog(slog.New(slog.NewJSONHandler(&buf, nil)), 10*time.Second)
	l.now = clock.now

	type step struct {
		do   func(Tracker)
		want []map[string]any // the lines logged by this step
	}
	steps := []step{
		{do: func(Tracker) {}, want: []map[string]any{{"msg": "started", "name": "img", "size": "100.0 MiB"}}},
		// Within the interval: quiet.
		{do: func(tr Tracker) { clock.advance(5 * time.Second); tr.Add(10 << 20) }},
		{do: func(tr Tracker) { clock.advance(5 * time.Second); tr.Add(10 << 20) }, want: []map[string]any{{
			"msg": "progress", "name": "img", "done": "20.0 MiB", "total": "100.0 MiB", "percent": "20%", "rate": "2.0 MiB/s",
		}}},
		{do: func(tr Tracker) { clock.advance(time.Second); tr.Add(1 << 20) }},
		// The rate is the recent one: 30 MiB in the last 10s.
		{do: func(tr Tracker) { clock.advance(9 * time.Second); tr.SetCurrent(50 << 20) }, want: []map[string]any{{
			"msg": "progress", "name": "img", "done": "50.0 MiB", "total": "100.0 MiB", "percent": "50%", "rate": "3.0 MiB/s",
		}}},
		{do: func(tr Tracker) { tr.SetCurrent(100 << 20); tr.Done(nil) }, want: []map[string]any{{
			"msg": "finished", "name": "img", "size": "100.0 MiB", "elapsed": 20 * time.Second, "rate": "5.0 MiB/s",
		}}},
		// After Done nothing more is logged.
		{do: func(tr Tracker) { clock.advance(time.Minute); tr.Add(1); tr.Done(errors.New("late")) }},
	}
	tr := l.Start("img", 100<<20)
	for i, s := range steps {
		s.do(tr)
		got := logLines(t, &buf)
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(s.want)
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("step %d logged\n%s\nwant\n%s", i, gotJSON, wantJSON)
		}
	}
}

func TestLogReporterResumeAndFailure(t *testing.T) {
	var buf bytes.Buffer
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := NewLog(slog.New(slog.NewJSONHandler(&buf, nil)), time.Second)
	l.now = clock.now

	tr := l.Start("iso", 0) // size unknown yet
	tr.SetTotal(1000)
	tr.SetCurrent(600) // resumed part-way: not counted in the rate
	clock.advance(2 * time.Second)
	tr.Add(200)
	tr.Done(errors.New("connection reset"))
	lines := logLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("logged %v, want started, progress, failed", lines)
	}
	if _, ok := lines[0]["size"]; ok {
		t.Errorf("start line %v shows a size that was not known", lines[0])
	}
	if lines[1]["percent"] != "80%" || lines[1]["rate"] != "100 B/s" {
		t.Errorf("progress line %v, want 80%% at 100 B/s", lines[1])
	}
	if lines[2]["msg"] != "failed" || lines[2]["err"] != "connection reset" {
		t.Errorf("last line %v, want the failure and its error", lines[2])
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{Bytes(0), "0 B"},
		{Bytes(1023), "1023 B"},
		{Bytes(1024), "1.0 KiB"},
		{Bytes(1536), "1.5 KiB"},
		{Bytes(5 << 30), "5.0 GiB"},
		{Bytes(3 << 50), "3.0 PiB"},
		{Percent(1, 3), "33%"},
		{Percent(5, 4), "100%"},
		{Percent(1, 0), "?"},
		{Rate(3<<20, 2*time.Second), "1.5 MiB/s"},
		{Rate(1, 0), "? B/s"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("case %d = %q, want %q", i, tt.got, tt.want)
		}
	}
}

func TestWriterAndNop(t *testing.T) {
	rec := &countTracker{}
	n, err := io.Copy(Writer(rec), strings.NewReader("hello, world"))
	if err != nil || n != 12 || rec.n != 12 {
		t.Errorf("copy through Writer: %d, %v; tracker counted %d, want 12", n, err, rec.n)
	}
	tr := Nop().Start("x", 1)
	tr.Add(1)
	tr.SetCurrent(1)
	tr.SetTotal(2)
	tr.Done(nil)
}

type countTracker struct{ n int64 }

func (c *countTracker) Add(n int64)      { c.n += n }
func (c *countTracker) SetCurrent(int64) {}
func (c *countTracker) SetTotal(int64)   {}
func (c *countTracker) Done(error)       {}

func TestIsTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	file, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	// The master side of a new pseudo-terminal is a terminal; no controlling tty is needed.
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pty.Close()
	tests := []struct {
		name string
		f    *os.File
		want bool
	}{{"pipe", w, false}, {"file", file, false}, {"nil", nil, false}, {"pty", pty, true}}
	for _, tt := range tests {
		if got := IsTerminal(tt.f); got != tt.want {
			t.Errorf("IsTerminal(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// syncBuffer is a bytes.Buffer that mpb's goroutine and the test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBars(t *testing.T) {
	out := &syncBuffer{}
	b := newBars(out, mpb.WithAutoRefresh())

	ok := b.Start("good.qcow2", 0)
	ok.SetTotal(4096)
	ok.Add(1024)
	ok.SetCurrent(4096)
	ok.Done(nil)
	ok.Done(errors.New("ignored: already done"))

	bad := b.Start("bad.iso", 100)
	bad.Add(10)
	bad.Done(errors.New("boom"))

	b.Start("unfinished.raw", 100).Add(5)
	b.Start("refused.iso", 0).Done(errors.New("connection refused")) // failed before its first byte

	b.Begin("boot: waiting for SSH").Done(nil)
	b.Begin("install: waiting for power-off").Done(errors.New("timeout"))
	b.Begin("unfinished wait")
	if _, err := b.Write([]byte("a log line\n")); err != nil {
		t.Fatal(err)
	}

	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: an unfinished bar blocks shutdown")
	}
	if _, err := b.Write([]byte("after close\n")); err != nil {
		t.Fatal(err)
	}
	if tr := b.Start("late", 1); tr == nil {
		t.Fatal("Start after Close returned nil")
	}

	// A log line goes back to the first column, whatever the terminal echoed below the bars.
	if !strings.Contains(out.String(), "\ra log line\n") {
		t.Errorf("the log line does not start with a carriage return: %q", out.String())
	}
	// Each frame starts by moving up over the previous one and clearing it; without those
	// escapes and carriage returns, every line drawn is a line of the output.
	s := regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]|\r`).ReplaceAllString(out.String(), "")
	// Finished bars are printed once above the live ones (mpb's pop-completed mode), each on a
	// line of its own.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^good\.qcow2 +100% .*4\.0 KiB / 4\.0 KiB`),
		regexp.MustCompile(`(?m)^bad\.iso +failed `),
		regexp.MustCompile(`(?m)^unfinished\.raw +failed `),
		regexp.MustCompile(`(?m)^refused\.iso +failed `),
		regexp.MustCompile(`(?m)^boot: waiting for SSH +done +00:00`),
		regexp.MustCompile(`(?m)^install: waiting for power-off +failed +00:00`),
		regexp.MustCompile(`(?m)^unfinished wait +failed +00:00`),
		regexp.MustCompile(`(?m)^a log line$`),
		regexp.MustCompile(`(?m)^after close$`),
	} {
		if !want.MatchString(s) {
			t.Errorf("output lacks %s:\n%s", want, s)
		}
	}
}

// A task logs when it starts, every interval while it runs with the time so far, and when it ends;
// nothing after Done.
func TestLogTask(t *testing.T) {
	for _, fail := range []error{nil, errors.New("guest powered off")} {
		buf := &syncBuffer{}
		l := NewLog(slog.New(slog.NewJSONHandler(buf, nil)), 20*time.Millisecond)
		task := l.Begin("vm: waiting for SSH")
		time.Sleep(70 * time.Millisecond)
		task.Done(fail)
		task.Done(errors.New("ignored: already done"))
		time.Sleep(50 * time.Millisecond) // a tick that outlived Done would log now

		var msgs []string
		for line := range strings.Lines(buf.String()) {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if m["name"] != "vm: waiting for SSH" {
				t.Errorf("line %v does not name the task", m)
			}
			if _, ok := m["elapsed"]; !ok && m["msg"] != "started" {
				t.Errorf("line %v does not say how long the task has taken", m)
			}
			msgs = append(msgs, m["msg"].(string))
		}
		end := "finished"
		if fail != nil {
			end = "failed"
		}
		if len(msgs) < 3 || msgs[0] != "started" || msgs[1] != "progress" || msgs[len(msgs)-1] != end ||
			slices.Contains(msgs[1:len(msgs)-1], end) || strings.Count(buf.String(), `"msg":"`+end+`"`) != 1 {
			t.Errorf("task %v logged %v, want started, progress…, %s", fail, msgs, end)
		}
	}
}

// Begin shows tasks on the reporters that can, and on any other Reporter returns a Task that does
// nothing rather than failing.
func TestBegin(t *testing.T) {
	tests := []struct {
		name string
		r    Reporter
		want bool
	}{
		{"log", NewLog(slog.New(slog.DiscardHandler), time.Hour), true},
		{"bars", newBars(io.Discard), true},
		{"nop", Nop(), true},
		{"bytes only", onlyStart{}, false},
	}
	for _, tt := range tests {
		_, shows := tt.r.(Tasks)
		if shows != tt.want {
			t.Errorf("%s: shows tasks = %v, want %v", tt.name, shows, tt.want)
		}
		task := Begin(tt.r, "wait")
		if task == nil {
			t.Fatalf("%s: Begin returned nil", tt.name)
		}
		task.Done(nil)
		if b, ok := tt.r.(*Bars); ok {
			b.Close()
		}
	}
}

// onlyStart is a Reporter that counts bytes and knows no tasks.
type onlyStart struct{}

func (onlyStart) Start(string, int64) Tracker { return Nop().Start("", 0) }
