package disk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/ingot-build/ingot/internal/execx"
)

// go-diskfs reads partition tables and filesystems from raw bytes at offsets. A raw image gives
// it those directly; any other format (qcow2, vmdk, vhdx…) is served by qemu-nbd, read-only, on a
// private Unix socket, and read through the minimal NBD client below. That reads exactly the
// few kilobytes inspection needs (partition table, superblocks), where converting to a temporary
// raw would copy the whole disk and need its space. No kernel nbd module or root is involved:
// qemu-nbd only listens, and the client is plain socket I/O.
//
// The client speaks the fixed newstyle handshake with NBD_OPT_EXPORT_NAME and simple replies
// (doc/proto.md of the NBD project), which every qemu-nbd since 2.x serves.

const (
	nbdMagic         = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic      = 0x49484156454f5054 // "IHAVEOPT"
	nbdRequestMagic  = 0x25609513
	nbdReplyMagic    = 0x67446698
	nbdFlagFixed     = 1 << 0 // handshake: fixed newstyle
	nbdFlagNoZeroes  = 1 << 1 // handshake: no 124 bytes of padding after the export info
	nbdOptExportName = 1
	nbdCmdRead       = 0
	nbdCmdDisconnect = 2
	nbdMaxRead       = 8 << 20 // well under qemu-nbd's 32 MiB limit on a request
)

// nbdStderrTail bounds the stderr of qemu-nbd kept for an error: its message, not pages of it.
const nbdStderrTail = 2 << 10

// nbdImage is an image served by a qemu-nbd child process and read through one connection.
type nbdImage struct {
	cmd  *exec.Cmd
	wait func() error  // qemu-nbd's exit (execx.Start)
	done chan struct{} // closed when qemu-nbd has exited
	dir  string
	conn net.Conn
	size int64
	stop func() bool // ends the watch that closes conn when the context ends

	mu     sync.Mutex
	handle uint64
}

// openNBD serves path (in format) with qemu-nbd and connects to it. Close stops both.
func openNBD(ctx context.Context, path, format string) (*nbdImage, error) {
	dir, err := os.MkdirTemp("", "ingot-nbd-") // short: a socket path is limited to 108 bytes
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "sock")
	cmd := exec.Command("qemu-nbd", "--read-only", "--format="+format, "--socket="+sock, "--shared=1", path)
	stderr := execx.NewTail(nbdStderrTail)
	cmd.Stderr = stderr
	// Owned (execx.Start): if ingot dies, qemu-nbd must not wait for a client forever.
	wait, err := execx.Start(cmd)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start qemu-nbd: %w; install it with: apt-get install qemu-utils", err)
	}
	n := &nbdImage{cmd: cmd, wait: wait, done: make(chan struct{}), dir: dir}
	go func() {
		defer close(n.done)
		_ = wait() // read where it matters: dial, when qemu-nbd exits before it listens
	}()

	conn, err := n.dial(ctx, sock)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("serve %s with qemu-nbd: %w: %s", path, err, stderr.String())
	}
	n.conn = conn
	// net.Conn has no context: closing it is what makes a blocked read return.
	n.stop = context.AfterFunc(ctx, func() { conn.Close() })
	if n.size, err = nbdHandshake(conn); err != nil {
		n.Close()
		return nil, fmt.Errorf("connect to qemu-nbd for %s: %w", path, err)
	}
	return n, nil
}

// dial waits for qemu-nbd's socket: it appears once the image is open.
func (n *nbdImage) dial(ctx context.Context, sock string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for attempt := 1; ; attempt++ {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", sock)
		if err == nil {
			return conn, nil
		}
		select {
		case <-n.done:
			return nil, fmt.Errorf("qemu-nbd exited before it listened: %w", n.wait())
		case <-ctx.Done():
			return nil, fmt.Errorf("no socket after %d attempts: %w", attempt, ctx.Err())
		case <-tick.C:
		}
	}
}

func nbdHandshake(conn net.Conn) (int64, error) {
	var hello struct {
		Magic, OptMagic uint64
		Flags           uint16
	}
	if err := binary.Read(conn, binary.BigEndian, &hello); err != nil {
		return 0, fmt.Errorf("read the greeting: %w", err)
	}
	if hello.Magic != nbdMagic || hello.OptMagic != nbdOptMagic || hello.Flags&nbdFlagFixed == 0 {
		return 0, fmt.Errorf("not a fixed-newstyle NBD server (greeting %#x %#x %#x)", hello.Magic, hello.OptMagic, hello.Flags)
	}
	client := uint32(nbdFlagFixed) | uint32(hello.Flags&nbdFlagNoZeroes)
	// Client flags, then NBD_OPT_EXPORT_NAME for the default export (""), qemu-nbd's only one.
	msg := binary.BigEndian.AppendUint32(nil, client)
	msg = binary.BigEndian.AppendUint64(msg, nbdOptMagic)
	msg = binary.BigEndian.AppendUint32(msg, nbdOptExportName)
	msg = binary.BigEndian.AppendUint32(msg, 0)
	if _, err := conn.Write(msg); err != nil {
		return 0, fmt.Errorf("send the export name: %w", err)
	}
	var export struct {
		Size  uint64
		Flags uint16
	}
	if err := binary.Read(conn, binary.BigEndian, &export); err != nil {
		return 0, fmt.Errorf("read the export: %w", err)
	}
	if hello.Flags&nbdFlagNoZeroes == 0 {
		if _, err := io.CopyN(io.Discard, conn, 124); err != nil {
			return 0, fmt.Errorf("read the export: %w", err)
		}
	}
	return int64(export.Size), nil
}

// Size is the export's size: the image's virtual size.
func (n *nbdImage) Size() int64 { return n.size }

// ReadAt implements io.ReaderAt with NBD_CMD_READ requests, one at a time.
func (n *nbdImage) ReadAt(p []byte, off int64) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if off >= n.size {
		return 0, io.EOF
	}
	want := p
	if rest := n.size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	done := 0
	for done < len(want) {
		c := min(len(want)-done, nbdMaxRead)
		if err := n.read(want[done:done+c], off+int64(done)); err != nil {
			return done, err
		}
		done += c
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

func (n *nbdImage) read(p []byte, off int64) error {
	n.handle++
	req := make([]byte, 28)
	binary.BigEndian.PutUint32(req[0:], nbdRequestMagic)
	binary.BigEndian.PutUint16(req[6:], nbdCmdRead)
	binary.BigEndian.PutUint64(req[8:], n.handle)
	binary.BigEndian.PutUint64(req[16:], uint64(off))
	binary.BigEndian.PutUint32(req[24:], uint32(len(p)))
	if _, err := n.conn.Write(req); err != nil {
		return fmt.Errorf("nbd read at %d: %w", off, err)
	}
	var reply [16]byte
	if _, err := io.ReadFull(n.conn, reply[:]); err != nil {
		return fmt.Errorf("nbd read at %d: %w", off, err)
	}
	switch {
	case binary.BigEndian.Uint32(reply[0:]) != nbdReplyMagic:
		return fmt.Errorf("nbd read at %d: bad reply magic %#x", off, reply[0:4])
	case binary.BigEndian.Uint64(reply[8:]) != n.handle:
		return fmt.Errorf("nbd read at %d: reply for another request", off)
	case binary.BigEndian.Uint32(reply[4:]) != 0:
		return fmt.Errorf("nbd read at %d: server error %d", off, binary.BigEndian.Uint32(reply[4:]))
	}
	if _, err := io.ReadFull(n.conn, p); err != nil {
		return fmt.Errorf("nbd read at %d: %w", off, err)
	}
	return nil
}

// Close disconnects, which makes qemu-nbd exit (it serves one client and is not persistent),
// and kills it if it does not exit promptly.
func (n *nbdImage) Close() error {
	var errs []error
	if n.conn != nil {
		n.stop()
		req := make([]byte, 28)
		binary.BigEndian.PutUint32(req[0:], nbdRequestMagic)
		binary.BigEndian.PutUint16(req[6:], nbdCmdDisconnect)
		n.conn.Write(req) // best effort: the kill below covers a server that is gone
		n.conn.Close()
	} else {
		errs = append(errs, n.kill()) // never connected: it would wait for a client forever
	}
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
		errs = append(errs, n.kill())
		<-n.done
	}
	if err := os.RemoveAll(n.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// kill ends qemu-nbd's process group, unless it has exited (its group id could be anyone's by
// then).
func (n *nbdImage) kill() error {
	select {
	case <-n.done:
		return nil
	default:
		return execx.KillGroup(n.cmd)
	}
}
