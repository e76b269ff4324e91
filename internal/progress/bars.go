package progress

import (
	"io"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Bars draws one progress bar per operation with mpb. Use it only when the output is a terminal
// (IsTerminal): bars are redrawn in place with cursor movements that make a mess of files.
//
// Anything else written to the same terminal while bars are drawn tears them apart, so Bars is also
// an io.Writer that prints above the bars: point the log handler at it. Close it before exiting so
// the last frame is drawn.
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
		p:    mpb.New(append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(64)}, opts...)...),
		live: make(map[*bar]struct{}),
	}
}

// Start implements Reporter. After Close it returns a tracker that does nothing.
func (b *Bars) Start(name string, total int64) Tracker {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nop{}
	}
	// The bar is created without a total and given one with SetTotal, so mpb never completes it on
	// its own when current reaches total: only Done decides whether it succeeded, and a download
	// that reaches its size but then fails verification is shown as failed.
	mb, err := b.p.Add(0, mpb.BarStyle().Build(),
		mpb.PrependDecorators(
			decor.Name(name, decor.WC{C: decor.DindentRight | decor.DextraSpace}),
			decor.OnAbort(decor.OnComplete(decor.Percentage(decor.WC{W: 5}), "done"), "failed"),
		),
		mpb.AppendDecorators(
			decor.CountersKibiByte("% .1f / % .1f"),
			decor.OnComplete(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace), ""),
		),
	)
	if err != nil { // the container has shut down
		return nop{}
	}
	if total > 0 {
		mb.SetTotal(total, false)
	}
	t := &bar{owner: b, b: mb}
	b.live[t] = struct{}{}
	return t
}

// Write prints p above the bars; after Close it writes straight to the output.
func (b *Bars) Write(p []byte) (int, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if !closed {
		if n, err := b.p.Write(p); err == nil {
			return n, nil
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
		t.b.Abort(false)
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
	once  sync.Once
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
		if err != nil {
			t.b.Abort(false)
		} else {
			t.b.SetTotal(-1, true) // total = current, and complete
		}
		t.owner.forget(t)
	})
}
