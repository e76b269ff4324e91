package secrets

import (
	"context"
	"log/slog"
)

// Handler wraps h so that every record's message and attributes are masked (Mask) before h
// sees them: a build's logger, through which a step's streamed output, a command's error and
// every other line pass. Attribute values of any kind are masked by their text; groups are
// walked.
func (s *Set) Handler(h slog.Handler) slog.Handler {
	if s.Len() == 0 {
		return h
	}
	return &maskHandler{set: s, next: h}
}

type maskHandler struct {
	set  *Set
	next slog.Handler
}

func (m *maskHandler) Enabled(ctx context.Context, l slog.Level) bool { return m.next.Enabled(ctx, l) }

func (m *maskHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, m.set.Mask(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(m.attr(a))
		return true
	})
	return m.next.Handle(ctx, out)
}

func (m *maskHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		masked[i] = m.attr(a)
	}
	return &maskHandler{set: m.set, next: m.next.WithAttrs(masked)}
}

func (m *maskHandler) WithGroup(name string) slog.Handler {
	return &maskHandler{set: m.set, next: m.next.WithGroup(name)}
}

// attr masks one attribute. A value that is not a string (an error, a Stringer, a number) is
// masked by its text only when the text holds a secret, so numbers and durations keep their
// kinds in JSON logs.
func (m *maskHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		group := v.Group()
		masked := make([]any, len(group))
		for i, g := range group {
			masked[i] = m.attr(g)
		}
		return slog.Group(a.Key, masked...)
	case slog.KindString:
		return slog.String(a.Key, m.set.Mask(v.String()))
	case slog.KindAny:
		text := v.String()
		if masked := m.set.Mask(text); masked != text {
			return slog.String(a.Key, masked)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
