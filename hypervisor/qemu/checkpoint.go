package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/internal/execx"
)

var _ hypervisor.Checkpointer = (*Machine)(nil)

// saveBandwidth is the migration's max-bandwidth during a checkpoint: 1 TiB/s, no limit in
// practice. QEMU 7.2's default (128 MiB/s) keeps a running guest's live migration from flooding
// a network; a paused guest going to a local file only waits for it.
const saveBandwidth = 1 << 40

// Checkpoint saves the machine's RAM and device state to statePath (hypervisor.Checkpointer): QMP
// stop, then a migration of the paused guest at full speed, its stream compressed by an owned
// zstd (migrate.go says why not QEMU's exec: URI) into a temp file beside statePath (0600),
// fsynced and renamed. The
// guest stays paused, with its disks flushed and inactive (QEMU's block layer gives up its image
// locks at the end of a migration, so the overlay can be read, or copied, by qemu-img); Resume
// continues it.
//
// Why not QEMU's background-snapshot capability (QEMU ≥ 6.0), which saves RAM while the guest
// runs: the RAM it writes is the guest's at the start of the save, but the disk goes on changing,
// so no disk copy taken after it matches; and the paused save of a booted 1 GiB guest takes
// about a second here (TCG, 2 cores).
//
// A guest Checkpoint already saved must be Resumed before another Checkpoint: QEMU refuses to
// migrate a machine paused by an earlier migration. When ctx ends the migration is cancelled
// (QMP migrate_cancel) and nothing is left at statePath or beside it.
func (m *Machine) Checkpoint(ctx context.Context, statePath string) (err error) {
	m.migrateMu.Lock()
	defer m.migrateMu.Unlock()
	began := time.Now()
	defer func() {
		if err != nil {
			err = fmt.Errorf("checkpoint to %s: %w", statePath, err)
		}
	}()
	if m.gone() {
		return fmt.Errorf("the machine is not running: %w", m.exitReason())
	}
	zstdPath, err := exec.LookPath("zstd")
	if err != nil {
		return fmt.Errorf("a checkpoint compresses with zstd: %w; install it with: apt-get install zstd", err)
	}
	pf, err := renameio.NewPendingFile(statePath, renameio.WithTempDir(filepath.Dir(statePath)), renameio.WithStaticPermissions(0o600))
	if err != nil {
		return fmt.Errorf("create the state file: %w", err)
	}
	defer func() {
		if cerr := pf.Cleanup(); cerr != nil && err != nil { // Cleanup is a no-op after the rename
			err = errors.Join(err, fmt.Errorf("remove the unfinished state file: %w", cerr))
		}
	}()
	sock, removeSock, err := m.privateSocket("migrate.sock")
	if err != nil {
		return err
	}
	defer removeSock()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen for the migration stream: %w", err)
	}
	defer ln.Close()

	st := newStream()
	go func() { st.finish(0, m.compress(ln, pf.File, zstdPath, st)) }()
	abort := func(cause error) error {
		cancelErr := m.command(ctx, "migrate_cancel", nil, nil)
		if cancelErr != nil && m.gone() {
			cancelErr = nil // nothing left to cancel
		}
		ln.Close()
		st.abort(killTimeout)
		if errors.Is(cause, errExited) {
			cause = m.exitReason()
		}
		return errors.Join(cause, cancelErr)
	}

	if err := m.command(ctx, "stop", nil, nil); err != nil {
		return abort(fmt.Errorf("pause the guest: %w", err))
	}
	paused := time.Now()
	if err := m.command(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": saveBandwidth}, nil); err != nil {
		return abort(err)
	}
	if err := m.command(ctx, "migrate", map[string]any{"uri": "unix:" + sock}, nil); err != nil {
		return abort(err)
	}
	info, err := m.awaitMigration(ctx, st)
	if err != nil {
		return abort(err)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("write the state file: %w", err)
	}
	if err := syncDir(filepath.Dir(statePath)); err != nil {
		return fmt.Errorf("sync the state file's directory: %w", err)
	}
	args := []any{"path", statePath, "took", time.Since(began), "paused", time.Since(paused)}
	if fi, err := os.Stat(statePath); err == nil {
		args = append(args, "file", fi.Size())
	}
	if info.RAM != nil {
		args = append(args, "ram_transferred", info.RAM.Transferred, "ram", info.RAM.Total)
	}
	m.log.Debug("checkpoint saved", args...)
	return nil
}

// Resume continues a guest paused by Checkpoint (hypervisor.Checkpointer): QMP cont, which also
// takes the disks back (bdrv_activate_all). It continues any paused guest, and does nothing to a
// running one.
func (m *Machine) Resume(ctx context.Context) error {
	m.migrateMu.Lock()
	defer m.migrateMu.Unlock()
	if m.gone() {
		return fmt.Errorf("resume the guest: the machine is not running: %w", m.exitReason())
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("resume the guest: %w", err)
	}
	if err := m.command(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("resume the guest: %w", err)
	}
	return nil
}

// compress accepts QEMU's migration stream on ln and runs zstd on it, from the socket (stdin) to
// out (stdout), as an owned child; it returns once zstd has exited, nil if with status 0.
func (m *Machine) compress(ln *net.UnixListener, out *os.File, zstdPath string, st *stream) error {
	c, err := ln.AcceptUnix()
	if err != nil {
		return fmt.Errorf("accept QEMU's migration stream: %w", err)
	}
	in, err := c.File() // a dup, which zstd gets as its stdin (os/exec makes it blocking)
	c.Close()
	if err != nil {
		return fmt.Errorf("accept QEMU's migration stream: %w", err)
	}
	defer in.Close()
	// -1 and every core (-T0): the guest is paused until zstd is done; -c: to stdout, the
	// temp file renameio made (0600).
	cmd := exec.Command(zstdPath, "-T0", "-1", "-q", "-c")
	cmd.Stdin, cmd.Stdout = in, out
	stderr := execx.NewTail(2048)
	cmd.Stderr = stderr
	wait, err := execx.Start(cmd)
	if err != nil {
		return fmt.Errorf("start zstd: %w", err)
	}
	in.Close() // zstd has its copy: it sees EOF when QEMU closes its end
	if !st.onAbort(func() { _ = execx.KillGroup(cmd) }) {
		_ = wait()
		return errors.New("the checkpoint was abandoned")
	}
	if err := wait(); err != nil {
		return fmt.Errorf("compress the migration stream: %w", &execx.Error{Argv: cmd.Args, Stderr: stderr.String(), Err: err})
	}
	return nil
}
