package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ingot-build/ingot/internal/progress"
)

// output is where a command's log and progress go, chosen by where stderr ends up (DESIGN.md, CLI
// shape): on a terminal, progress bars with the log lines printed above them; with --log-format
// json, one JSON event a line, progress events among them; anywhere else, plain lines, a progress
// line every 10 s among them.
type output struct {
	Log      *slog.Logger
	Progress progress.Tasks
	bars     *progress.Bars // nil without a terminal
}

// newOutput sets up the log and progress written to w. getenv is os.Getenv outside tests.
//
// Bars need a terminal that understands cursor movements, so a dumb terminal (TERM=dumb) gets plain
// lines; so does CI (CI set, as CI systems set it), whose log keeps every frame a bar redraws even
// where the job runs under a pseudo-terminal.
func newOutput(w io.Writer, format string, verbose bool, getenv func(string) string) (*output, error) {
	var bars *progress.Bars
	if f, ok := w.(*os.File); ok && (format == "text" || format == "") &&
		progress.IsTerminal(f) && getenv("CI") == "" && getenv("TERM") != "dumb" {
		bars = progress.NewBars(f)
		w = bars
	}
	log, err := newLogger(w, format, verbose)
	if err != nil {
		return nil, err // a bad format never made bars
	}
	if bars != nil {
		return &output{Log: log, Progress: bars, bars: bars}, nil
	}
	return &output{Log: log, Progress: progress.NewLog(log, 10*time.Second)}, nil
}

// Close draws the last frame of the bars and stops drawing: what is written to w afterwards
// goes straight to it. It is safe to call more than once.
func (o *output) Close() {
	if o.bars != nil {
		o.bars.Close()
	}
}

// newLogger returns the build log: one JSON object a line for CI (--log-format json), or short
// timestamped lines for people.
func newLogger(w io.Writer, format string, verbose bool) (*slog.Logger, error) {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})), nil
	case "text", "":
		return slog.New(&lineHandler{w: w, level: level, mu: new(sync.Mutex)}), nil
	default:
		return nil, usageError{fmt.Errorf("--log-format %q: want text or json", format)}
	}
}

// lineHandler prints "15:04:05 [build/step] message key=value…": the build and step as a prefix,
// so interleaved parallel builds and provisioner output stay readable.
type lineHandler struct {
	w     io.Writer
	level slog.Level
	mu    *sync.Mutex
	attrs []slog.Attr
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var prefix []string
	var rest strings.Builder
	add := func(a slog.Attr) bool {
		a.Value = a.Value.Resolve()
		if a.Equal(slog.Attr{}) { // slog's rule for handlers: an empty Attr is not printed
			return true
		}
		switch a.Key {
		case "build", "step":
			prefix = append(prefix, a.Value.String())
		case "stream":
			// provisioner output: the prefix says enough
		default:
			v := a.Value.String()
			if strings.ContainsAny(v, " \t\n\"") {
				v = fmt.Sprintf("%q", v)
			}
			fmt.Fprintf(&rest, " %s=%s", a.Key, v)
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	var sb strings.Builder
	sb.WriteString(r.Time.Format(time.TimeOnly))
	if r.Level != slog.LevelInfo {
		sb.WriteString(" " + r.Level.String())
	}
	if len(prefix) > 0 {
		sb.WriteString(" [" + strings.Join(prefix, "/") + "]")
	}
	sb.WriteString(" " + r.Message + rest.String() + "\n")
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, sb.String())
	return err
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }
