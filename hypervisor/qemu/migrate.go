package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Checkpoints are QEMU migrations to and from a file (checkpoint.go, restore.go). The stream goes
// through a unix socket in the machine's private work dir, with ingot at the other end.
//
// Saving, ingot hands the socket QEMU connected to an owned zstd (`zstd -T0 -1`) as its stdin,
// and the temp state file as its stdout. QEMU's own exec: URI (`exec:zstd -o FILE`) is as fast
// but not safe with QEMU 7.2: the migration reports "completed" before QEMU closes the pipe and
// reaps zstd (migrate_fd_cleanup runs later, in a bottom half), and QEMU never looks at zstd's
// exit status (io/channel-command.c waits with a NULL status), so an ENOSPC on zstd's last flush
// would pass for a checkpoint. Owning zstd, ingot knows the file holds every byte QEMU sent
// (zstd read to EOF and exited 0) before it fsyncs and renames it. zstd rather than the
// klauspost encoder because the paused guest waits for it: on a 1 GiB guest's 328 MB stream
// (a booted Debian), zstd -T0 -1 took 0.5-0.6 s and klauspost's fastest level 0.7-0.9 s here.
//
// Restoring, ingot decompresses with klauspost (as fast as zstd -dc here, 0.37 s for that
// stream) into the socket QEMU listens on: its errors are then told apart from QEMU's, and the
// content checksum is checked before the guest is continued.

// qmpTimeout bounds one QMP command of a checkpoint or a restore. Those commands do not run
// under the caller's context: its end would close the monitor (monitor.run), and a checkpoint
// that is given up still needs the monitor to cancel the migration.
const qmpTimeout = 10 * time.Second

// pollInterval is how often query-migrate is asked while a migration runs.
const pollInterval = 50 * time.Millisecond

// migrationInfo is the part of query-migrate's reply (QAPI MigrationInfo) that checkpoints read;
// go-qemu's raw types predate some of it (shared/STYLE.md).
type migrationInfo struct {
	// Status: none, setup, active, device, completed, failed, cancelling, cancelled, … The
	// incoming side reports its own migration the same way.
	Status    string `json:"status"`
	TotalTime int64  `json:"total-time"` // ms, outgoing side only
	Downtime  int64  `json:"downtime"`   // ms, outgoing side only
	ErrorDesc string `json:"error-desc"` // why it failed (QEMU ≥ 2.7)
	RAM       *struct {
		Transferred int64 `json:"transferred"` // bytes of RAM sent, before compression
		Total       int64 `json:"total"`       // the guest's RAM size
	} `json:"ram"`
}

// command runs a QMP command bounded by qmpTimeout, whatever ctx does (see qmpTimeout).
func (m *Machine) command(ctx context.Context, command string, args, out any) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), qmpTimeout)
	defer cancel()
	return m.qmp.run(cctx, command, args, out)
}

// gone reports whether QEMU has exited.
func (m *Machine) gone() bool {
	select {
	case <-m.procDone:
		return true
	default:
		return false
	}
}

// errExited is QEMU's exit in the middle of a migration; where it shows, the caller adds how and
// why (exitReason, startError).
var errExited = errors.New("QEMU exited")

// exitReason says how QEMU ended, with its stderr (where it writes why a migration failed).
func (m *Machine) exitReason() error {
	return fmt.Errorf("%w (%v): %s", errExited, m.wait(), strings.TrimSpace(string(m.stderr.Bytes())))
}

// stream is the copy between QEMU's migration socket and the state file, run by a goroutine.
type stream struct {
	done chan struct{} // closed when the copy ended; then err and n are set
	err  error
	n    int64 // bytes of the (uncompressed) migration stream copied, when known

	mu      sync.Mutex
	stop    func() // ends the copy: closes its connection, kills its zstd
	stopped bool
}

func newStream() *stream { return &stream{done: make(chan struct{})} }

// onAbort records how to end the copy. It reports false, having called stop, if abort came
// first.
func (s *stream) onAbort(stop func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		stop()
		return false
	}
	s.stop = stop
	return true
}

// abort ends the copy and waits for it, for at most wait.
func (s *stream) abort(wait time.Duration) {
	s.mu.Lock()
	s.stopped = true
	if s.stop != nil {
		s.stop()
	}
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-time.After(wait):
	}
}

// result says whether the copy has ended, and with what error.
func (s *stream) result() (bool, error) {
	select {
	case <-s.done:
		return true, s.err
	default:
		return false, nil
	}
}

func (s *stream) finish(n int64, err error) {
	s.n, s.err = n, err
	close(s.done)
}

// awaitMigration waits until the migration QEMU runs (either way) has ended and the copy st is
// done, polling query-migrate. Success needs both: QEMU's "completed" and a copy that ended
// cleanly (at EOF from QEMU, or at the end of the state file). It fails as soon as one of them
// fails, QEMU exits, or ctx ends; the caller then cleans up (a cancel, a kill).
func (m *Machine) awaitMigration(ctx context.Context, st *stream) (migrationInfo, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	copied := st.done
	for {
		select {
		case <-ctx.Done():
			return migrationInfo{}, ctx.Err()
		case <-m.procDone:
			return migrationInfo{}, errExited
		case <-copied:
			if st.err != nil {
				return migrationInfo{}, st.err
			}
			copied = nil // done: from now on only QEMU's status is awaited
		case <-tick.C:
		}
		var info migrationInfo
		if err := m.command(ctx, "query-migrate", nil, &info); err != nil {
			if m.gone() {
				return migrationInfo{}, errExited
			}
			return migrationInfo{}, err
		}
		switch {
		case info.Status == "failed" || info.Status == "cancelled":
			msg := info.ErrorDesc
			if msg == "" {
				msg = "no reason given"
			}
			return info, fmt.Errorf("the migration %s: %s", info.Status, msg)
		case info.Status == "completed" && copied == nil:
			return info, nil
		}
	}
}

// privateSocket is a path for a unix socket in the machine's private work dir (or in a private
// temp dir when that path would be too long for a socket), and what removes it afterwards.
func (m *Machine) privateSocket(name string) (string, func(), error) {
	p, err := socketPath(m.spec.WorkDir, name)
	if err != nil {
		return "", nil, err
	}
	if p == filepath.Join(m.spec.WorkDir, name) {
		_ = os.Remove(p) // left by a machine that was killed
		return p, func() { _ = os.Remove(p) }, nil
	}
	dir := filepath.Dir(p)
	return p, func() { _ = os.RemoveAll(dir) }, nil
}

// sourceError is an error reading the state file, as opposed to writing the stream to QEMU.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// sourceReader marks the errors of r as sourceErrors.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
