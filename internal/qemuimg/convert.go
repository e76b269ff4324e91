package qemuimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/ingot-build/ingot/internal/execx"
)

// ConvertOptions are one qemu-img convert.
type ConvertOptions struct {
	InputFormat string   // the source's format (-f); required, see the package doc
	Format      string   // the output's format (-O)
	Compress    bool     // -c (qcow2: zlib unless Options says otherwise)
	Options     []string // -o key=value
	// BackingFile makes the output an overlay on it (-B), holding only what differs from it:
	// the image store keeps a build as such a layer. It must have the content the source's
	// backing chain has below its top. BackingFormat (-F) is its format, required with it.
	BackingFile, BackingFormat string
	// Progress, when set, is called with the fraction done (0 to 1) as qemu-img reports it (-p).
	Progress func(fraction float64)
}

// Convert writes the image in (any format qemu-img reads, its backing chain flattened unless
// o.BackingFile says otherwise) to out. qemu-img runs as an owned child (execx.Stream): a
// conversion left running after ingot died would go on filling the disk.
func Convert(ctx context.Context, in, out string, o ConvertOptions) error {
	args, err := convertArgs(in, out, o)
	if err != nil {
		return fmt.Errorf("convert %s: %w", in, err)
	}
	stdout := io.Discard
	if o.Progress != nil {
		stdout = &percentWriter{report: o.Progress}
	}
	if err := execx.Stream(ctx, stdout, tool, args...); err != nil {
		return fmt.Errorf("convert %s to %s: %w", in, o.Format, installHint(err))
	}
	return nil
}

// convertArgs is the argv of Convert, after "qemu-img".
func convertArgs(in, out string, o ConvertOptions) ([]string, error) {
	if err := needFormat("source", o.InputFormat); err != nil {
		return nil, err
	}
	if o.Format == "" {
		return nil, errors.New("no output format")
	}
	args := []string{"convert", "-f", o.InputFormat, "-O", o.Format}
	if o.Progress != nil {
		args = append(args, "-p")
	}
	if o.Compress {
		args = append(args, "-c")
	}
	if len(o.Options) > 0 {
		args = append(args, "-o", strings.Join(o.Options, ","))
	}
	if o.BackingFile != "" {
		if err := needFormat("backing file "+o.BackingFile, o.BackingFormat); err != nil {
			return nil, err
		}
		args = append(args, "-B", o.BackingFile, "-F", o.BackingFormat)
	}
	return append(args, in, out), nil
}

// progressUpdate matches what `qemu-img convert -p` prints while it works: "    (12.34/100%)",
// redrawn in place with \r, so updates are not lines.
var progressUpdate = regexp.MustCompile(`\((\d+(?:\.\d+)?)/100%\)`)

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
	if ms := progressUpdate.FindAllSubmatch(done, -1); len(ms) > 0 {
		if pct, err := strconv.ParseFloat(string(ms[len(ms)-1][1]), 64); err == nil {
			w.report(pct / 100)
		}
	}
	w.pending = append(w.pending[:0], w.pending[last+1:]...)
	return len(p), nil
}
