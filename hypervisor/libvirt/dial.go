package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"golang.org/x/crypto/ssh"
)

// dialTimeout bounds reaching the daemon and the RPC handshake when the caller's context has no
// deadline of its own.
const dialTimeout = 30 * time.Second

// connector opens connections to one daemon. Each machine gets a connection of its own: its
// domain is created with VIR_DOMAIN_START_AUTODESTROY, so libvirtd destroys it when that
// connection closes, whatever ended ingot; and a machine's streams (console, disk transfers) never
// queue behind another machine's.
type connector struct {
	t   target
	ssh *ssh.Client // for qemu+ssh: one SSH connection carries every libvirt connection and tunnel
}

// conn is one RPC connection and the byte stream under it, which is what unblocks go-libvirt
// calls (none takes a context) when closed.
type conn struct {
	*golibvirt.Libvirt
	raw net.Conn
}

// connect dials the daemon and opens the QEMU driver on it. go-libvirt has no contexts: the byte
// stream is dialled here with ctx, and if ctx ends during the handshake the stream is closed, which
// is the only way to unblock it.
func (c *connector) connect(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	raw, err := c.dialStream(ctx)
	if err != nil {
		return nil, err
	}
	l := golibvirt.NewWithDialer(dialers.NewAlreadyConnected(raw))
	opened := make(chan error, 1)
	go func() { opened <- l.ConnectToURI(c.t.name) }()
	select {
	case err = <-opened:
	case <-ctx.Done():
		raw.Close()
		<-opened
		return nil, fmt.Errorf("connect to libvirtd at %s: %w", c.t, ctx.Err())
	}
	if err != nil {
		raw.Close()
		return nil, c.explainOpen(err)
	}
	return &conn{Libvirt: l, raw: raw}, nil
}

// dialStream makes the byte stream the RPC protocol runs over.
func (c *connector) dialStream(ctx context.Context) (net.Conn, error) {
	switch c.t.transport {
	case transportUnix:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", c.t.socket)
		if err != nil {
			return nil, c.explainDial(err)
		}
		return conn, nil
	case transportTCP:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(c.t.host, c.t.port))
		if err != nil {
			return nil, c.explainDial(err)
		}
		return conn, nil
	case transportSSH:
		conn, err := dialSSHChannel(ctx, c.ssh, "unix", c.t.socket)
		if err != nil {
			return nil, fmt.Errorf("connect to libvirtd at %s: open its socket %s over SSH: %w (is libvirtd running there? does sshd allow stream-local forwarding, AllowStreamLocalForwarding?)", c.t, c.t.socket, err)
		}
		return conn, nil
	}
	return nil, fmt.Errorf("connect to libvirtd at %s: unknown transport %q", c.t, c.t.transport)
}

// explainDial turns a failed dial into what to do about it.
func (c *connector) explainDial(err error) error {
	at := fmt.Sprintf("connect to libvirtd at %s", c.t)
	switch c.t.transport {
	case transportUnix:
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("%s: libvirtd is not running (%s: %w); start it with: libvirtd -d (or: systemctl start libvirtd)", at, c.t.socket, err)
		case errors.Is(err, os.ErrPermission):
			return fmt.Errorf("%s: no permission to use %s (%w); add the user to the libvirt group (usermod -aG libvirt $USER, then log in again) or run ingot with sudo", at, c.t.socket, err)
		}
	case transportTCP:
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("%s: nothing listens on %s:%s (%w); on that host, run libvirtd with --listen and listen_tcp = 1 in libvirtd.conf (or use qemu+ssh://)", at, c.t.host, c.t.port, err)
		case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
			return fmt.Errorf("%s: %s:%s is unreachable (%w): check the host name, the network and its firewall", at, c.t.host, c.t.port, err)
		}
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return fmt.Errorf("%s: unknown host %q (%w)", at, c.t.host, err)
		}
	}
	return fmt.Errorf("%s: %w", at, err)
}

// explainOpen turns a failed RPC handshake into what to do about it.
func (c *connector) explainOpen(err error) error {
	at := fmt.Sprintf("connect to libvirtd at %s", c.t)
	var lerr golibvirt.Error
	if errors.As(err, &lerr) {
		switch golibvirt.ErrorNumber(lerr.Code) {
		case golibvirt.ErrAuthFailed, golibvirt.ErrAuthCancelled, golibvirt.ErrAuthUnavailable:
			return fmt.Errorf("%s: authentication failed (%w); ingot speaks only unauthenticated or polkit-authorised connections: add the user to the libvirt group, run with sudo, or use qemu+ssh:// (for qemu+tcp:// the daemon needs auth_tcp = \"none\", on a trusted network only)", at, err)
		case golibvirt.ErrNoConnect:
			return fmt.Errorf("%s: the daemon has no QEMU driver (%w); install it there: apt-get install libvirt-daemon-system qemu-system-x86", at, err)
		}
	}
	switch msg := err.Error(); {
	case strings.Contains(msg, "polkit"), strings.Contains(msg, "system bus"), strings.Contains(msg, "authoriz"):
		// Not root and not allowed by polkit (or no polkit to ask, as in containers).
		return fmt.Errorf("%s: not allowed to manage libvirt (%w); add the user to the libvirt group (usermod -aG libvirt $USER, then log in again) or run ingot with sudo", at, err)
	case strings.Contains(msg, "authentication"):
		return fmt.Errorf("%s: %w; ingot speaks only unauthenticated or polkit-authorised connections (no SASL, no TLS)", at, err)
	}
	return fmt.Errorf("%s: %w", at, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// close closes the connection, bounded: go-libvirt's Disconnect sends a ConnectClose RPC first,
// which blocks forever if the daemon has gone silent; then the stream is closed under it.
func (c *conn) close() error {
	done := make(chan error, 1)
	go func() { done <- c.Disconnect() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		c.raw.Close()
		return errors.New("libvirtd did not answer the disconnect within 10 s")
	}
}

// gone is closed when the connection is lost or closed.
func (c *conn) gone() <-chan struct{} { return c.Disconnected() }
