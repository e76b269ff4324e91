// Package progress reports how far long operations have got (downloads and disk conversions, which
// count bytes; waits for a guest, which count time) without the operation knowing where the report
// goes: bars on a terminal (Bars), periodic log lines when the output is a file or a CI log (Log), or
// nothing (Nop).
//
// Bars and log lines share the terminal through Bars: it is also the io.Writer the log handler
// writes to, and prints each line above the bars, since anything else written to a terminal while
// bars are redrawn in place tears them apart. cmd/ingot's newOutput makes that choice for `ingot
// build`; in short:
//
//	var rep progress.Tasks
//	logOut := io.Writer(os.Stderr)
//	if progress.IsTerminal(os.Stderr) && os.Getenv("CI") == "" && os.Getenv("TERM") != "dumb" {
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

// Task follows an operation that has nothing to count, such as a wait for a guest's SSH server.
// Reporters show how long it has taken so far: a boot under TCG takes minutes, and a screen that
// does not move for minutes looks hung. Every Task must end with exactly one Done; calls after
// Done are ignored.
type Task interface {
	// Done ends the operation; a nil err means it succeeded.
	Done(err error)
}

// Tasks is a Reporter that also shows Tasks; Bars, Log and Nop are. It is a separate interface so
// that a Reporter written for byte counts alone (a test's recorder) stays one.
type Tasks interface {
	Reporter
	// Begin begins showing the task called name.
	Begin(name string) Task
}

// Begin begins the task called name on r, if r shows tasks, and otherwise returns a Task that
// shows nothing.
func Begin(r Reporter, name string) Task {
	if ts, ok := r.(Tasks); ok {
		return ts.Begin(name)
	}
	return nop{}
}

// Tracker follows one operation that moves bytes.
type Tracker interface {
	Task
	// Add records n more bytes done.
	Add(n int64)
	// SetCurrent records that current bytes are done, e.g. when a download resumes part-way or a
	// retry starts over from zero.
	SetCurrent(current int64)
	// SetTotal records the size once it is known (≤ 0: unknown).
	SetTotal(total int64)
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
func Nop() Tasks { return nop{} }

type nop struct{}

func (nop) Start(string, int64) Tracker { return nop{} }
func (nop) Begin(string) Task           { return nop{} }
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
