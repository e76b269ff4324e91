package progress

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Bars draws one progress bar per operation, and a spinner with the time so far per task, with mpb.
// Use it only when the output is a terminal (IsTerminal): bars are redrawn in place with cursor
// movements that make a mess of files.
//
// Anything else written to the same terminal while bars are drawn tears them apart, so Bars is also
// an io.Writer that prints above the bars: point the log handler at it. A finished bar is printed
// once above the live ones, where it scrolls away with the log, so a long build keeps only what
// is still running at the bottom. Close it before exiting so the last frame is drawn.
type Bars struct {
	out io.Writer
	p   *mpb.Progress

	mu     sync.Mutex
	live   map[*bar]struct{}
	closed bool
}

// NewBars returns a Reporter that draws bars on w.
func NewBars(w io.Writer) *Bars { return newBars(w) }

// newBars lets tests force redrawing on a writer that is not a terminal.
func newBars(w io.Writer, opts ...mpb.ContainerOption) *Bars {
	return &Bars{
		out:  w,
		p:    mpb.New(append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(64), mpb.PopCompletedMode()}, opts...)...),
		live: make(map[*bar]struct{}),
	}
}

// nameDecor is the name an operation is shown under, first on its line.
func nameDecor(name string) decor.Decorator {
	return decor.Name(name, decor.WC{C: decor.DindentRight | decor.DextraSpace})
}

// Start implements Reporter. After Close it returns a tracker that does nothing.
//
// The bar is created without a total and given one with SetTotal, so mpb never completes it on its
// own when current reaches total: only Done decides whether it succeeded, and a download that
// reaches its size but then fails verification is shown as failed.
func (b *Bars) Start(name string, total int64) Tracker {
	t := &bar{owner: b}
	percent := decor.NewPercentage("%d")
	if !b.add(t, mpb.BarStyle().Build(),
		mpb.PrependDecorators(
			nameDecor(name),
			t.status(func(s decor.Statistics) string { str, _ := percent.Decor(s); return str }, decor.WC{W: 4}),
		),
		mpb.AppendDecorators(
			decor.CountersKibiByte("% .1f / % .1f"),
			decor.OnComplete(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace), ""),
		),
	) {
		return nop{}
	}
	t.SetTotal(total)
	return t
}

// Begin implements Tasks: a spinner and the time so far (mm:ss), then "done" or "failed" and the
// time it took. After Close it returns a task that does nothing.
func (b *Bars) Begin(name string) Task {
	t := &bar{owner: b}
	spinner := decor.Spinner(nil)
	if !b.add(t, mpb.NopStyle().Build(),
		mpb.PrependDecorators(
			nameDecor(name),
			t.status(func(s decor.Statistics) string {
				if s.Completed {
					return "done"
				}
				str, _ := spinner.Decor(s)
				return str
			}, decor.WC{C: decor.DindentRight}),
		),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			d := t.elapsed().Round(time.Second)
			return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
		}, decor.WCSyncSpace)),
	) {
		return nop{}
	}
	return t
}

// add adds t's bar, which only Done completes, and reports false after Close.
func (b *Bars) add(t *bar, filler mpb.BarFiller, opts ...mpb.BarOption) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	t.start = time.Now()
	mb, err := b.p.Add(0, filler, opts...)
	if err != nil { // the container has shut down
		return false
	}
	t.b = mb
	b.live[t] = struct{}{}
	return true
}

// Write prints p above the bars; after Close it writes straight to the output.
//
// p starts with a carriage return. mpb moves the cursor up over its last frame without going back
// to the first column, so whatever the terminal itself echoed below the bars (the "^C" of Ctrl-C)
// would shift the next frame's first line right, over what was left of the line above.
func (b *Bars) Write(p []byte) (int, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if !closed {
		if _, err := b.p.Write(append([]byte{'\r'}, p...)); err == nil {
			return len(p), nil
		}
	}
	return b.out.Write(p)
}

// Close marks unfinished operations as failed, draws the last frame and stops drawing.
func (b *Bars) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	live := make([]*bar, 0, len(b.live))
	for t := range b.live {
		live = append(live, t)
	}
	b.mu.Unlock()
	for _, t := range live {
		t.Done(errors.New("unfinished"))
	}
	b.p.Wait()
	return nil
}

func (b *Bars) forget(t *bar) {
	b.mu.Lock()
	delete(b.live, t)
	b.mu.Unlock()
}

type bar struct {
	owner *Bars
	b     *mpb.Bar
	start time.Time
	once  sync.Once

	mu     sync.Mutex
	failed bool
	end    time.Time // when Done was called
}

// status decorates the bar with "failed" once Done has been given an error, and with what
// running returns until then. The bar keeps this itself because mpb's own aborted flag is cleared when an aborted
// bar's current equals its total, as with a task or a download that failed before its first byte.
func (t *bar) status(running func(decor.Statistics) string, wc decor.WC) decor.Decorator {
	return decor.Any(func(s decor.Statistics) string {
		t.mu.Lock()
		failed := t.failed
		t.mu.Unlock()
		if failed {
			return "failed"
		}
		return running(s)
	}, wc)
}

// elapsed is the time from Start or Begin to Done, or to now if it is still running.
func (t *bar) elapsed() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.end.IsZero() {
		return time.Since(t.start)
	}
	return t.end.Sub(t.start)
}

func (t *bar) Add(n int64) { t.b.IncrInt64(n) }

func (t *bar) SetCurrent(cur int64) { t.b.SetCurrent(cur) }

func (t *bar) SetTotal(total int64) {
	if total > 0 {
		t.b.SetTotal(total, false)
	}
}

func (t *bar) Done(err error) {
	t.once.Do(func() {
		t.mu.Lock()
		t.failed, t.end = err != nil, time.Now()
		t.mu.Unlock()
		if err != nil {
			t.b.Abort(false)
		} else {
			t.b.SetTotal(-1, true) // total = current, and complete
		}
		t.owner.forget(t)
	})
}
