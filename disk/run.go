package disk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"sync"

	"github.com/ingot-build/ingot/internal/execx"
)

// stderrTail bounds the stderr kept for an error, as execx does: the tool's message, not pages of
// progress output.
const stderrTail = 2048

// runStreaming runs a command like execx.Run, but hands its stdout to out as it comes (for
// qemu-img's progress) and fails with the same *execx.Error, so a failure names the command line,
// its exit status and the tail of its stderr.
//
// The child dies with ingot (execx.Start): a conversion left running after a crash would go on
// filling the disk.
func runStreaming(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stdout = out
	cmd.Stderr = stderr
	wait, err := execx.Start(cmd)
	if err == nil {
		err = wait()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return &execx.Error{Argv: cmd.Args, Stderr: stderr.String(), Err: err}
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// qemuProgress matches what `qemu-img convert -p` prints while it works: "    (12.34/100%)",
// redrawn in place with \r, so updates are not lines.
var qemuProgress = regexp.MustCompile(`\((\d+(?:\.\d+)?)/100%\)`)

// percentWriter turns qemu-img's -p output into calls of report with a fraction in [0, 1].
type percentWriter struct {
	report  func(fraction float64)
	pending []byte
}

func (w *percentWriter) Write(p []byte) (int, error) {
	w.pending = append(w.pending, p...)
	// Only complete updates (ended by \r or \n) are parsed, so a number split across two writes
	// is never read half.
	last := bytes.LastIndexAny(w.pending, "\r\n")
	if last < 0 {
		if len(w.pending) > 4096 { // not progress output: do not grow without bound
			w.pending = w.pending[:0]
		}
		return len(p), nil
	}
	done := w.pending[:last+1]
	if ms := qemuProgress.FindAllSubmatch(done, -1); len(ms) > 0 && w.report != nil {
		if pct, err := strconv.ParseFloat(string(ms[len(ms)-1][1]), 64); err == nil {
			w.report(pct / 100)
		}
	}
	w.pending = append(w.pending[:0], w.pending[last+1:]...)
	return len(p), nil
}
