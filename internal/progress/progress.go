// Package progress reports how far long operations (downloads, disk conversions) have got, without the
// operation knowing where the report goes: bars on a terminal (Bars), periodic log lines when the output
// is a file or a CI log (Log), or nothing (Nop).
//
// A typical main wires it like this, so that log lines and bars share stderr without tearing each
// other apart:
//
//	var rep progress.Reporter
//	logOut := io.Writer(os.Stderr)
//	if progress.IsTerminal(os.Stderr) {
//		bars := progress.NewBars(os.Stderr)
//		defer bars.Close()
//		rep, logOut = bars, bars // log lines are printed above the bars
//	}
//	logger := slog.New(slog.NewTextHandler(logOut, nil))
//	if rep == nil {
//		rep = progress.NewLog(logger, 10*time.Second)
//	}
package progress

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Reporter starts tracking operations. Implementations are safe for concurrent use: parallel
// builds start trackers from several goroutines.
type Reporter interface {
	// Start begins tracking the operation called name, total bytes long (≤ 0 when unknown yet).
	Start(name string, total int64) Tracker
}

// Tracker follows one operation. Every Tracker must end with exactly one Done; calls after Done are
// ignored.
type Tracker interface {
	// Add records n more bytes done.
	Add(n int64)
	// SetCurrent records that current bytes are done, e.g. when a download resumes part-way or a
	// retry starts over from zero.
	SetCurrent(current int64)
	// SetTotal records the size once it is known (≤ 0: unknown).
	SetTotal(total int64)
	// Done ends the operation; a nil err means it succeeded.
	Done(err error)
}

// Writer returns an io.Writer that counts what is written to it into t, for io.MultiWriter or
// io.TeeReader in a copy loop.
func Writer(t Tracker) io.Writer { return trackWriter{t} }

type trackWriter struct{ t Tracker }

func (w trackWriter) Write(p []byte) (int, error) {
	w.t.Add(int64(len(p)))
	return len(p), nil
}

// Nop returns a Reporter that reports nothing: for tests, and for callers that asked for quiet.
func Nop() Reporter { return nop{} }

type nop struct{}

func (nop) Start(string, int64) Tracker { return nop{} }
func (nop) Add(int64)                   {}
func (nop) SetCurrent(int64)            {}
func (nop) SetTotal(int64)              {}
func (nop) Done(error)                  {}

// IsTerminal reports whether f is a terminal. It asks the kernel for the terminal attributes
// (TCGETS), as isatty(3) does, because golang.org/x/term is not one of our modules.
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
