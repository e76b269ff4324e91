package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
)

// zstdMagic starts every zstd frame (RFC 8878, 3.1.1), so every state file Checkpoint writes.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// openState opens a state file for a restore and checks, before any QEMU starts, that it is one:
// a missing, empty or foreign file fails here, with its name. The file stays open until the
// restore is over, so a concurrent rename or removal of the path cannot change what is restored.
func openState(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	head := make([]byte, len(zstdMagic))
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, zstdMagic) {
		f.Close()
		if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("restore: %s is not a state file a checkpoint wrote (no zstd header)", path)
		}
		return nil, fmt.Errorf("restore: read %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("restore: read %s: %w", path, err)
	}
	return f, nil
}

// restore loads the state file into QEMU, started with -incoming defer, and continues the guest:
// QMP migrate-incoming on a unix socket in the work dir, the file decompressed into it (the
// decoder checks zstd's content checksum at the end), query-migrate until "completed", then cont.
// The guest's clock is then behind by as long as the machine was saved: the caller (bake) sets it
// over SSH. UEFI variables need nothing more: QEMU keeps pflash contents in RAM, so they travel in
// the stream and are written back to the vars file when the guest continues (pflash_post_load).
//
// On error the caller kills the machine; restore only makes sure that the error says what went
// wrong first: a damaged file, or QEMU's refusal of the stream (whose reason startError adds).
func (m *Machine) restore(ctx context.Context, state *os.File) error {
	began := time.Now()
	sock, removeSock, err := m.privateSocket("incoming.sock")
	if err != nil {
		return err
	}
	defer removeSock()
	// migrate-incoming listens before it returns (socket_start_incoming_migration), so the
	// socket can be dialled at once.
	if err := m.command(ctx, "migrate-incoming", map[string]any{"uri": "unix:" + sock}, nil); err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return fmt.Errorf("connect to QEMU's incoming migration: %w", err)
	}
	st := newStream()
	st.onAbort(func() { conn.Close() })
	go func() {
		defer conn.Close() // QEMU reads what was written before the close, then EOF
		dec, err := zstd.NewReader(state)
		if err != nil {
			st.finish(0, &sourceError{err})
			return
		}
		defer dec.Close()
		n, err := io.Copy(conn, sourceReader{dec})
		st.finish(n, err)
	}()
	if _, err := m.awaitMigration(ctx, st); err != nil {
		st.abort(killTimeout)
		var se *sourceError
		if copied, copyErr := st.result(); errors.As(err, &se) || copied && errors.As(copyErr, &se) {
			// The cause, also when QEMU's exit was seen first: it gave up because the stream
			// ended early. (A corrupt file may also have loaded: the checksum fails at the end.)
			return fmt.Errorf("the state file is damaged (truncated or corrupt): %w", se.err)
		}
		if ctx.Err() == nil {
			// QEMU 7.2 exits when a load fails (process_incoming_migration_co) and says why on
			// stderr, which startError adds when QEMU is gone: give it a moment.
			select {
			case <-m.procDone:
			case <-time.After(2 * time.Second):
			}
		}
		if m.gone() {
			return errors.New("QEMU did not load it") // a broken pipe here says nothing more
		}
		return err
	}
	loaded := time.Now()
	if err := m.continueRestored(ctx); err != nil {
		return err
	}
	m.log.Debug("restored", "from", state.Name(), "took", time.Since(began), "load", loaded.Sub(began), "stream", st.n)
	return nil
}

// continueRestored continues a guest that has just been loaded. The stream was saved from a
// paused guest, so the machine comes out of the migration paused (QEMU sets the runstate the
// stream carries). It is continued only once it has left "inmigrate": a cont that arrives before
// (the migration's completion runs in a bottom half, after query-migrate already says
// "completed") only asks QEMU to start when done, which the paused runstate then overrides.
func (m *Machine) continueRestored(ctx context.Context) error {
	var status struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if err := m.command(ctx, "query-status", nil, &status); err != nil {
			return err
		}
		if status.Status != "inmigrate" {
			break
		}
		select {
		case <-tick.C:
		case <-m.procDone:
			return errExited
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if status.Running {
		return nil
	}
	if err := m.command(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("continue the restored guest (%s): %w", status.Status, err)
	}
	if err := m.command(ctx, "query-status", nil, &status); err != nil {
		return err
	}
	if !status.Running {
		return fmt.Errorf("the restored guest does not run after cont: its status is %q", status.Status)
	}
	return nil
}
