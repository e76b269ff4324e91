// Package digest hashes files: the one copy of "read a file once for its sha256 and size",
// which the image store (layer names), disk (outputs) and bake (downloads) all need.
package digest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// File reads path once and returns its sha256 (lower-case hex) and size. It stops when ctx
// ends. report, if not nil, is called with the bytes read so far and the file's size.
func File(ctx context.Context, path string, report func(done, total int64)) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	h := sha256.New()
	w := &progressWriter{ctx: ctx, total: st.Size(), report: report}
	n, err := io.CopyBuffer(io.MultiWriter(h, w), f, make([]byte, 4<<20))
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// progressWriter counts what passes, reports it, and ends the copy when ctx ends.
type progressWriter struct {
	ctx      context.Context
	n, total int64
	report   func(done, total int64)
}

func (w *progressWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	w.n += int64(len(p))
	if w.report != nil {
		w.report(w.n, w.total)
	}
	return len(p), nil
}
