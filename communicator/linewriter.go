package communicator

import (
	"bytes"
	"io"
	"sync"
)

// maxLine bounds one emitted line: a provisioner that prints a megabyte without a newline (a
// progress bar, a base64 blob) must not grow the buffer without limit.
const maxLine = 64 << 10

// LineWriter returns an io.WriteCloser that calls emit for each line written, without the line
// ending ("\n" or "\r\n"). A partial last line is flushed on Close; lines over 64 KiB are split.
// It is safe for concurrent use, so one writer can take both stdout and stderr.
func LineWriter(emit func(line string)) io.WriteCloser {
	return &lineWriter{emit: emit}
}

type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			break
		}
		w.buf = append(w.buf, p[:i]...)
		p = p[i+1:]
		w.flushLong()
		w.emitLine(bytes.TrimSuffix(w.buf, []byte("\r")))
		w.buf = w.buf[:0]
	}
	w.flushLong()
	return n, nil
}

// flushLong emits full 64 KiB chunks of an over-long pending line.
func (w *lineWriter) flushLong() {
	for len(w.buf) > maxLine {
		w.emitLine(w.buf[:maxLine])
		w.buf = append(w.buf[:0], w.buf[maxLine:]...)
	}
}

func (w *lineWriter) emitLine(b []byte) { w.emit(string(b)) }

// Close flushes a partial last line.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emitLine(bytes.TrimSuffix(w.buf, []byte("\r")))
		w.buf = w.buf[:0]
	}
	return nil
}
