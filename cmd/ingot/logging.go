package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

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
