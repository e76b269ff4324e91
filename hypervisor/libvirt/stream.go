package libvirt

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// Downloads do not go through go-libvirt. Its RPC layer takes the first packet carrying a call's
// serial as the call's reply, but libvirtd 9.0 may send a download's first data packet before the
// reply (seen about once in a hundred downloads here). go-libvirt then drops 256 KiB of the image
// and, when the real reply arrives, ends the stream while data is still coming: the disk comes back
// shifted, or the connection deadlocks (its reader blocks delivering to a caller that has left,
// holding the lock that caller needs). A download is also the one stream whose end go-libvirt never
// acknowledges, which leaves it open in libvirtd as a pool job until the connection closes.
//
// The console stream has the same exposure (the guest may write before the reply is read), and a
// deadlock there would freeze the machine's connection, events and all.
//
// So a download, and a console, gets a connection of its own, spoken to by this minimal client of
// libvirt's RPC protocol (src/rpc/virnetprotocol.x, src/remote/remote_protocol.x): the handshake,
// one call that opens a stream, the stream read by packet type, and a proper finish. Uploads stay
// with go-libvirt: libvirtd sends nothing on an upload stream until the client finishes it.

const (
	rpcProgram = 0x20008086 // REMOTE_PROGRAM
	rpcVersion = 1

	procConnectOpen        = 1
	procConnectClose       = 2
	procAuthList           = 66
	procAuthPolkit         = 70
	procDomainOpenConsole  = 201
	procStorageVolDownload = 209

	typeCall   = 0 // VIR_NET_CALL
	typeReply  = 1 // VIR_NET_REPLY
	typeStream = 3 // VIR_NET_STREAM

	statusOK       = 0 // VIR_NET_OK
	statusError    = 1 // VIR_NET_ERROR
	statusContinue = 2 // VIR_NET_CONTINUE

	authPolkit = 2 // REMOTE_AUTH_POLKIT

	headerLen = 28 // length + program, version, procedure, type, serial, status
	// maxPacket is libvirt's VIR_NET_MESSAGE_MAX (plus headroom): anything larger is a broken stream.
	maxPacket = 32 << 20
	// streamIdle bounds a silence in the middle of a download.
	streamIdle = 2 * time.Minute
)

type rpcHeader struct {
	program, version, proc, typ, serial, status uint32
}

// rpcClient is one connection to libvirtd, used for one thing at a time.
type rpcClient struct {
	conn   net.Conn
	r      *bufio.Reader
	serial uint32
}

// rawConnect dials the daemon and opens the QEMU driver on a connection of its own.
func (c *connector) rawConnect(ctx context.Context) (*rpcClient, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := c.dialStream(ctx)
	if err != nil {
		return nil, err
	}
	rc := &rpcClient{conn: conn, r: bufio.NewReaderSize(conn, 1<<20)}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	auth, err := rc.call(procAuthList, nil)
	if err != nil {
		conn.Close()
		return nil, c.explainOpen(err)
	}
	if n := len(auth) / 4; n > 0 {
		for i := range n - 1 {
			if binary.BigEndian.Uint32(auth[4+4*i:]) == authPolkit {
				if _, err := rc.call(procAuthPolkit, nil); err != nil {
					conn.Close()
					return nil, c.explainOpen(err)
				}
				break
			}
		}
	}
	var open xdr
	open.optString(string(c.t.name))
	open.uint32(0)
	if _, err := rc.call(procConnectOpen, open.b); err != nil {
		conn.Close()
		return nil, c.explainOpen(err)
	}
	return rc, nil
}

// close says goodbye (bounded) and closes the connection.
func (rc *rpcClient) close() {
	_ = rc.conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = rc.call(procConnectClose, nil)
	rc.conn.Close()
}

func (rc *rpcClient) send(h rpcHeader, payload []byte) error {
	buf := make([]byte, headerLen+len(payload))
	binary.BigEndian.PutUint32(buf[0:], uint32(len(buf)))
	binary.BigEndian.PutUint32(buf[4:], rpcProgram)
	binary.BigEndian.PutUint32(buf[8:], rpcVersion)
	binary.BigEndian.PutUint32(buf[12:], h.proc)
	binary.BigEndian.PutUint32(buf[16:], h.typ)
	binary.BigEndian.PutUint32(buf[20:], h.serial)
	binary.BigEndian.PutUint32(buf[24:], h.status)
	copy(buf[headerLen:], payload)
	_, err := rc.conn.Write(buf)
	return err
}

func (rc *rpcClient) recv(buf []byte) (rpcHeader, []byte, error) {
	var hb [headerLen]byte
	if _, err := io.ReadFull(rc.r, hb[:]); err != nil {
		return rpcHeader{}, nil, err
	}
	n := binary.BigEndian.Uint32(hb[0:])
	if n < headerLen || n > maxPacket {
		return rpcHeader{}, nil, fmt.Errorf("libvirt RPC: packet of %d bytes", n)
	}
	h := rpcHeader{
		program: binary.BigEndian.Uint32(hb[4:]), version: binary.BigEndian.Uint32(hb[8:]),
		proc: binary.BigEndian.Uint32(hb[12:]), typ: binary.BigEndian.Uint32(hb[16:]),
		serial: binary.BigEndian.Uint32(hb[20:]), status: binary.BigEndian.Uint32(hb[24:]),
	}
	size := int(n) - headerLen
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(rc.r, buf); err != nil {
		return rpcHeader{}, nil, err
	}
	return h, buf, nil
}

// call makes a call and returns its reply's payload.
func (rc *rpcClient) call(proc uint32, args []byte) ([]byte, error) {
	rc.serial++
	serial := rc.serial
	if err := rc.send(rpcHeader{proc: proc, typ: typeCall, serial: serial, status: statusOK}, args); err != nil {
		return nil, err
	}
	for {
		h, payload, err := rc.recv(nil)
		if err != nil {
			return nil, err
		}
		if h.program != rpcProgram || h.serial != serial || h.typ != typeReply {
			continue // nothing else is expected on this connection; keepalives are not enabled
		}
		if h.status == statusError {
			return nil, decodeRPCError(payload)
		}
		return payload, nil
	}
}

// download streams a volume into w.
func (rc *rpcClient) download(vol golibvirt.StorageVol, w io.Writer) (int64, error) {
	var args xdr
	args.string(vol.Pool)
	args.string(vol.Name)
	args.string(vol.Key)
	args.uint64(0) // offset
	args.uint64(0) // length: all
	args.uint32(0) // flags
	return rc.stream(procStorageVolDownload, args.b, w, nil, streamIdle)
}

// console streams a domain's (first) console into w until the console closes (the domain stopped)
// or the connection does. opened is called when libvirtd has accepted the call: the console is
// then attached, and nothing the guest writes from then on is lost.
func (rc *rpcClient) console(dom golibvirt.Domain, w io.Writer, opened func()) (int64, error) {
	var args xdr
	args.string(dom.Name)
	args.b = append(args.b, dom.UUID[:]...) // remote_uuid: fixed-length opaque, 16 bytes
	args.uint32(uint32(dom.ID))
	args.uint32(0) // dev_name: NULL, the first console
	args.uint32(uint32(golibvirt.DomainConsoleForce))
	return rc.stream(procDomainOpenConsole, args.b, w, opened, 0) // a guest may be silent for long
}

// stream makes a call that opens a stream from libvirtd and copies the stream into w, whatever
// order libvirtd sends the call's reply and the stream's packets in, and finishes the stream as
// libvirt's own client does. idle, if not 0, bounds a silence of the stream.
func (rc *rpcClient) stream(proc uint32, args []byte, w io.Writer, opened func(), idle time.Duration) (int64, error) {
	rc.serial++
	serial := rc.serial
	if err := rc.send(rpcHeader{proc: proc, typ: typeCall, serial: serial}, args); err != nil {
		return 0, err
	}
	var got int64
	finished := false
	buf := make([]byte, 1<<20)
	for {
		if idle > 0 {
			_ = rc.conn.SetReadDeadline(time.Now().Add(idle))
		}
		h, payload, err := rc.recv(buf)
		if err != nil {
			return got, fmt.Errorf("stream: %w", err)
		}
		if h.program != rpcProgram || h.serial != serial {
			continue
		}
		switch {
		case h.typ == typeReply && h.status == statusError:
			return got, decodeRPCError(payload)
		case h.typ == typeReply:
			// The call was accepted; data may already have come.
			if opened != nil {
				opened()
			}
		case h.typ == typeStream && h.status == statusContinue && len(payload) > 0:
			if _, err := w.Write(payload); err != nil {
				return got, err
			}
			got += int64(len(payload))
		case h.typ == typeStream && h.status == statusContinue:
			// End of data: finish our side; libvirtd confirms with OK.
			if finished {
				continue
			}
			finished = true
			if err := rc.send(rpcHeader{proc: proc, typ: typeStream, serial: serial, status: statusOK}, nil); err != nil {
				return got, fmt.Errorf("stream: finish: %w", err)
			}
		case h.typ == typeStream && h.status == statusOK:
			_ = rc.conn.SetReadDeadline(time.Time{})
			if !finished {
				return got, errors.New("stream: libvirtd ended the stream before its end of data")
			}
			return got, nil
		case h.typ == typeStream && h.status == statusError:
			return got, decodeRPCError(payload)
		}
	}
}

// decodeRPCError reads a remote_error (code, domain, message) as a golibvirt.Error, so isCode
// works on it.
func decodeRPCError(b []byte) error {
	if len(b) < 12 {
		return errors.New("libvirt RPC: malformed error")
	}
	code := binary.BigEndian.Uint32(b[0:])
	msg := "unknown libvirt error"
	if binary.BigEndian.Uint32(b[8:]) == 1 && len(b) >= 16 {
		n := binary.BigEndian.Uint32(b[12:])
		if int(n) <= len(b)-16 {
			msg = string(b[16 : 16+n])
		}
	}
	return golibvirt.Error{Code: code, Message: msg}
}

// xdr is the little of RFC 4506 the calls above need.
type xdr struct{ b []byte }

func (x *xdr) uint32(v uint32) { x.b = binary.BigEndian.AppendUint32(x.b, v) }
func (x *xdr) uint64(v uint64) { x.b = binary.BigEndian.AppendUint64(x.b, v) }

func (x *xdr) string(s string) {
	x.uint32(uint32(len(s)))
	x.b = append(x.b, s...)
	for len(x.b)%4 != 0 {
		x.b = append(x.b, 0)
	}
}

// optString is libvirt's remote_string: a pointer, encoded as a one-element-or-empty array.
func (x *xdr) optString(s string) {
	x.uint32(1)
	x.string(s)
}
