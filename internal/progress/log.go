package progress

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Log reports progress as log lines, at most one per operation every interval: a bar redrawn in a
// file or a CI log is noise, but a build that goes quiet for ten minutes looks hung. With a JSON
// log handler (--log-format json) each line is an event a CI system can read.
type Log struct {
	logger *slog.Logger
	every  time.Duration
	now    func() time.Time // replaced in tests
}

// NewLog returns a Reporter that logs through logger at most once per operation every interval
// (10s if interval ≤ 0), plus one line when each operation starts and one when it ends. A tracker
// logs when its count moves; a task, which has nothing to count, logs every interval.
func NewLog(logger *slog.Logger, every time.Duration) *Log {
	if every <= 0 {
		every = 10 * time.Second
	}
	return &Log{logger: logger, every: every, now: time.Now}
}

// Start implements Reporter.
func (l *Log) Start(name string, total int64) Tracker {
	now := l.now()
	t := &logTracker{l: l, name: name, total: total, start: now, last: now}
	attrs := []any{"name", name}
	if total > 0 {
		attrs = append(attrs, "size", Bytes(total))
	}
	l.logger.Info("started", attrs...)
	return t
}

// Begin implements Tasks: a line when the task starts, one every interval while it runs saying how
// long it has taken so far, and one when it ends.
func (l *Log) Begin(name string) Task {
	t := &logTask{l: l, name: name, start: l.now(), stop: make(chan struct{}), stopped: make(chan struct{})}
	l.logger.Info("started", "name", name)
	go t.tick()
	return t
}

type logTask struct {
	l       *Log
	name    string
	start   time.Time
	once    sync.Once
	stop    chan struct{} // closed by Done
	stopped chan struct{} // closed by tick when it returns, so Done's line is the last
}

func (t *logTask) tick() {
	defer close(t.stopped)
	ticker := time.NewTicker(t.l.every)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			t.l.logger.Info("progress", "name", t.name, "elapsed", t.l.now().Sub(t.start).Round(time.Second))
		case <-t.stop:
			return
		}
	}
}

func (t *logTask) Done(err error) {
	t.once.Do(func() {
		close(t.stop)
		<-t.stopped
		elapsed := t.l.now().Sub(t.start).Round(time.Millisecond)
		if err != nil {
			t.l.logger.Info("failed", "name", t.name, "elapsed", elapsed, "err", err)
			return
		}
		t.l.logger.Info("finished", "name", t.name, "elapsed", elapsed)
	})
}

type logTracker struct {
	l     *Log
	name  string
	mu    sync.Mutex
	total int64
	cur   int64
	start time.Time
	// last and lastCur are when the previous line was logged and how far we were then, so the
	// rate in each line is the recent one, not the average since the start.
	last    time.Time
	lastCur int64
	// startCur is where the operation started (a resumed download starts part-way), so the
	// average rate at the end counts only bytes moved now.
	startCur int64
	moved    bool // whether Add or SetCurrent has been called
	done     bool
}

func (t *logTracker) Add(n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur += n
	t.moved = true
	t.maybeLog()
}

func (t *logTracker) SetCurrent(cur int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// The first position (a resumed download) and any step backwards (a retry starting over) set
	// the baseline, so rates count only the bytes moved from there.
	if !t.moved || cur < t.cur {
		t.startCur, t.lastCur = cur, cur
	}
	t.moved = true
	t.cur = cur
	t.maybeLog()
}

func (t *logTracker) SetTotal(total int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total = total
}

// maybeLog logs a line if the interval has passed. Called with t.mu held.
func (t *logTracker) maybeLog() {
	if t.done {
		return
	}
	now := t.l.now()
	dt := now.Sub(t.last)
	if dt < t.l.every {
		return
	}
	attrs := []any{"name", t.name, "done", Bytes(t.cur)}
	if t.total > 0 {
		attrs = append(attrs, "total", Bytes(t.total), "percent", Percent(t.cur, t.total))
	}
	attrs = append(attrs, "rate", Rate(t.cur-t.lastCur, dt))
	t.l.logger.Info("progress", attrs...)
	t.last, t.lastCur = now, t.cur
}

func (t *logTracker) Done(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	elapsed := t.l.now().Sub(t.start)
	if err != nil {
		t.l.logger.Info("failed", "name", t.name, "done", Bytes(t.cur), "elapsed", elapsed.Round(time.Millisecond), "err", err)
		return
	}
	t.l.logger.Info("finished", "name", t.name, "size", Bytes(t.cur),
		"elapsed", elapsed.Round(time.Millisecond), "rate", Rate(t.cur-t.startCur, elapsed))
}

// Bytes formats n bytes in binary units ("1.5 GiB"), as people read disk and image sizes.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Percent formats cur/total as a whole percentage, never above 100%.
func Percent(cur, total int64) string {
	if total <= 0 {
		return "?"
	}
	p := cur * 100 / total
	return fmt.Sprintf("%d%%", min(p, 100))
}

// Rate formats n bytes moved in d as bytes per second.
func Rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "? B/s"
	}
	return Bytes(int64(float64(n)/d.Seconds())) + "/s"
}
