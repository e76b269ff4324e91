// Package ctxio gives blocking I/O and waits a context: a long copy, hash or upload stops when
// its context ends, and a wait returns early with the context's error (STYLE.md: no sleep
// without a context).
package ctxio

import (
	"context"
	"io"
	"time"
)

// Reader returns r with each Read failing with ctx's error once ctx ends. A Read already in
// progress is not interrupted: it ends the copy at the next read, which for the files and
// streams ingot copies is within one buffer.
func Reader(ctx context.Context, r io.Reader) io.Reader { return &reader{ctx: ctx, r: r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c *reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Sleep waits for d, or until ctx ends, whichever comes first; it returns ctx's error in the
// second case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
