package communicator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrHostKeyMismatch is wrapped by the error of a connection whose server presented another host
// key than the pinned one. A mismatch is a security error: it is never retried.
var ErrHostKeyMismatch = errors.New("host key mismatch")

// Config says where the guest's sshd is, who to log in as, and how long to wait.
type Config struct {
	Addr    string        // host:port, e.g. QEMU's hostfwd on 127.0.0.1
	User    string        // the build user cloud-init created
	Keys    *Keys         // the client key to offer and the host key to pin
	Logger  *slog.Logger  // nil: discard
	Timeout time.Duration // bounds each wait for SSH (Connect, and reconnecting after Reboot); 0: DefaultTimeout

	// Abort ends a wait at once when it yields a value (or is closed): the pipeline sends "the
	// guest powered off" here, so waiting for SSH never outlives the machine it waits for. The
	// value is wrapped in the returned error.
	Abort <-chan error
}

// DefaultTimeout bounds a wait for SSH when Config.Timeout is 0: first boots under TCG, with
// cloud-init growing partitions and generating keys, take minutes.
const DefaultTimeout = 10 * time.Minute

// Retry shape: the first attempt goes at once, then 250 ms, doubling to a 2 s cap.
const (
	firstRetry = 250 * time.Millisecond
	maxRetry   = 2 * time.Second
)

// attemptTimeout bounds one attempt from TCP connect to authenticated session. QEMU's hostfwd
// accepts TCP before the guest listens, and a forward to a guest whose network is not up can
// stay silent: without a deadline one attempt would hang for the whole wait. A variable so the
// tests can shorten it.
var attemptTimeout = 15 * time.Second

// maxAuthFailures is how many attempts in a row may be refused authentication after the host
// key verified. A verified host key means cloud-init's ssh module ran, and authorized_keys is
// written in the same boot stage, so a refusal is nearly always final; the retries cover an
// sshd that starts before cloud-init has finished writing it.
const maxAuthFailures = 5

// keepaliveInterval is how often keepalive@openssh.com is sent; three intervals without a
// reply close the connection, so a guest that died during a long command is noticed instead
// of waited on forever (x/crypto/ssh has no timeouts of its own).
const keepaliveInterval = 5 * time.Second

// Client is a connection to a build guest. Reboot replaces the connection underneath, so a
// Client stays valid across reboots.
type Client struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	conn   *ssh.Client
	stopKA func()
	// lost says why keepalives closed the connection, for the errors of the commands it broke.
	lost error
}

// Connect waits for the guest's sshd at cfg.Addr and returns a Client once a session is
// authenticated against the pinned host key. Refused, reset and silent connections are
// retried (at once, then 250 ms doubling to 2 s) until cfg.Timeout, ctx or cfg.Abort ends the
// wait; a host key mismatch ends it at once.
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	switch {
	case cfg.Addr == "":
		return nil, errors.New("ssh config: no address")
	case cfg.User == "":
		return nil, errors.New("ssh config: no user")
	case cfg.Keys == nil || cfg.Keys.Client == nil:
		return nil, errors.New("ssh config: no client key")
	}
	if _, err := cfg.Keys.hostKey(); err != nil {
		return nil, fmt.Errorf("ssh config: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: log}
	conn, err := c.wait(ctx, nil)
	if err != nil {
		return nil, err
	}
	c.setConn(conn)
	return c, nil
}

// Close closes the connection; commands still running on it fail. Closing a closed Client, or
// one whose connection the guest or a keepalive already dropped, is not an error.
func (c *Client) Close() error {
	conn := c.detach()
	if conn == nil {
		return nil
	}
	return closeConn(conn)
}

// detach takes the connection away from the Client and stops its keepalives; the caller closes
// it. It returns nil if there is none.
func (c *Client) detach() *ssh.Client {
	c.mu.Lock()
	conn, stop := c.conn, c.stopKA
	c.conn, c.stopKA = nil, nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	return conn
}

// closeConn closes conn. net.ErrClosed means it was closed already (by a keepalive that went
// unanswered, or by the context of a dial), which leaves nothing to report.
func closeConn(conn *ssh.Client) error {
	if err := conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("closing ssh connection: %w", err)
	}
	return nil
}

// current returns the live connection.
func (c *Client) current() (*ssh.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil, errors.New("not connected to the guest")
	}
	return c.conn, nil
}

// setConn makes conn the Client's connection and starts its keepalives.
func (c *Client) setConn(conn *ssh.Client) {
	stop := make(chan struct{})
	var once sync.Once
	c.mu.Lock()
	c.conn = conn
	c.stopKA = func() { once.Do(func() { close(stop) }) }
	c.lost = nil
	c.mu.Unlock()
	go keepalive(conn, keepaliveInterval, stop, c.log, func(err error) {
		c.mu.Lock()
		if c.conn == conn {
			c.lost = err
		}
		c.mu.Unlock()
	})
}

// lostReason is why keepalives closed the current connection, or nil.
func (c *Client) lostReason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// keepalive probes conn every interval and closes it when a probe goes unanswered for three
// intervals, so commands and transfers on a dead guest fail instead of hanging; lost is told
// why first, so that their errors can say it.
func keepalive(conn *ssh.Client, interval time.Duration, stop <-chan struct{}, log *slog.Logger, lost func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		res := make(chan error, 1)
		go func() {
			// OpenSSH answers "unsupported", which proves it alive as well as "ok" would.
			_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
			res <- err
		}()
		wait := time.NewTimer(3 * interval)
		select {
		case err := <-res:
			wait.Stop()
			if err != nil {
				return // the connection is gone already; its users see that
			}
		case <-wait.C:
			log.Warn("ssh keepalive unanswered; closing the connection", "after", 3*interval)
			lost(fmt.Errorf("the guest answered no SSH keepalive for %s: its network, its sshd or the guest itself is gone", 3*interval))
			if err := closeConn(conn); err != nil {
				log.Debug("closing the unanswered connection", "err", err)
			}
			return
		case <-stop:
			wait.Stop()
			return
		}
	}
}

// errRetry marks an error from wait's check as worth another attempt.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

// errAuth marks an attempt refused authentication after the host key verified.
var errAuth = errors.New("authentication refused")

// wait dials until a session is up and check (if not nil) accepts it; a check error wrapped in
// errRetry closes that connection and tries again, any other ends the wait.
func (c *Client) wait(ctx context.Context, check func(context.Context, *ssh.Client) error) (*ssh.Client, error) {
	cfg := c.cfg
	start := time.Now()
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, cfg.Timeout, errWaitTimeout)
	defer cancelTimeout()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if cfg.Abort != nil {
		go func() {
			select {
			case err, ok := <-cfg.Abort:
				if !ok || err == nil {
					err = errors.New("aborted")
				}
				cancel(err)
			case <-ctx.Done():
			}
		}()
	}

	var last error
	authFailures := 0
	for attempt := 1; ; attempt++ {
		conn, err := dialOnce(ctx, cfg, attemptTimeout)
		if err == nil && check != nil {
			if err = check(ctx, conn); err != nil {
				if closeErr := closeConn(conn); closeErr != nil {
					c.log.Debug("closing a connection the check refused", "addr", cfg.Addr, "err", closeErr)
				}
				var retry errRetry
				if !errors.As(err, &retry) && ctx.Err() == nil {
					return nil, fmt.Errorf("waiting for SSH at %s: %w", cfg.Addr, err)
				}
			}
		}
		if err == nil {
			c.log.Info("ssh connected", "addr", cfg.Addr, "user", cfg.User, "attempts", attempt,
				"elapsed", time.Since(start).Round(time.Millisecond))
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, c.waitErr(ctx, start, attempt, last)
		}
		last = err
		switch {
		case errors.Is(err, ErrHostKeyMismatch):
			return nil, fmt.Errorf("waiting for SSH at %s: %w", cfg.Addr, err)
		case errors.Is(err, errAuth):
			if authFailures++; authFailures >= maxAuthFailures {
				return nil, fmt.Errorf("waiting for SSH at %s: the guest verified as ours but refused the key of %s %d times (is %s the user cloud-init created, with ingot's key in its authorized_keys?): %w",
					cfg.Addr, cfg.User, authFailures, cfg.User, err)
			}
		default:
			authFailures = 0
		}
		delay := retryDelay(attempt)
		c.log.Debug("ssh not ready", "addr", cfg.Addr, "attempt", attempt, "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, c.waitErr(ctx, start, attempt, last)
		}
	}
}

// errWaitTimeout is the cause of a wait that used up Config.Timeout.
var errWaitTimeout = errors.New("wait timed out")

// waitErr says why a wait ended: what was tried, for how long, and what went wrong last.
func (c *Client) waitErr(ctx context.Context, start time.Time, attempts int, last error) error {
	cause := context.Cause(ctx)
	elapsed := time.Since(start)
	if errors.Is(cause, errWaitTimeout) {
		return fmt.Errorf("no SSH session at %s after %s (%d attempts); last error: %w",
			c.cfg.Addr, elapsed.Round(time.Second), attempts, last)
	}
	msg := fmt.Sprintf("waiting for SSH at %s: stopped after %s (%d attempts)", c.cfg.Addr, elapsed.Round(time.Millisecond), attempts)
	if last != nil {
		return fmt.Errorf("%s: %w (last error: %v)", msg, cause, last)
	}
	return fmt.Errorf("%s: %w", msg, cause)
}

// retryDelay is the pause after the n-th failed attempt (n ≥ 1).
func retryDelay(n int) time.Duration {
	d := firstRetry
	for i := 1; i < n && d < maxRetry; i++ {
		d *= 2
	}
	return min(d, maxRetry)
}

// dialOnce makes one attempt: TCP connect, handshake with the pinned host key and public key
// authentication, under one deadline, ended at once by ctx.
func dialOnce(ctx context.Context, cfg Config, timeout time.Duration) (*ssh.Client, error) {
	hostKey, err := cfg.Keys.hostKey()
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	// x/crypto/ssh knows no contexts: the deadline bounds a server that never speaks, and
	// closing the socket ends the handshake when ctx does.
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(timeout))
	var (
		mu       sync.Mutex
		verified bool
	)
	pinned := hostKey.Marshal()
	ccfg := &ssh.ClientConfig{
		User: cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(cfg.Keys.Client)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if !bytes.Equal(key.Marshal(), pinned) {
				return fmt.Errorf("%w at %s: expected %s, got %s — the guest is not using the key ingot put in its seed (was the seed ignored? is something else listening on the port?)",
					ErrHostKeyMismatch, cfg.Addr, ssh.FingerprintSHA256(hostKey), ssh.FingerprintSHA256(key))
			}
			mu.Lock()
			verified = true
			mu.Unlock()
			return nil
		},
		// Ask for the pinned key's algorithm only, so a server with several host keys presents
		// the one we can verify.
		HostKeyAlgorithms: hostKeyAlgorithms(hostKey),
	}
	sconn, chans, reqs, err := ssh.NewClientConn(nc, cfg.Addr, ccfg)
	if err != nil {
		stop()
		_ = nc.Close()
		mu.Lock()
		ok := verified
		mu.Unlock()
		var ne net.Error
		switch {
		case errors.Is(err, ErrHostKeyMismatch):
			return nil, err
		case errors.As(err, &ne) && ne.Timeout():
			return nil, fmt.Errorf("handshake: no answer within %s (sshd or the guest's network not up yet?): %w", timeout, err)
		case transient(err):
			return nil, fmt.Errorf("handshake: connection closed (the port accepted it but sshd is not up yet?): %w", err)
		case ok:
			return nil, fmt.Errorf("%w: %v", errAuth, err)
		default:
			return nil, fmt.Errorf("handshake: %w", err)
		}
	}
	if !stop() {
		_ = sconn.Close()
		return nil, context.Cause(ctx)
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(sconn, chans, reqs), nil
}

// hostKeyAlgorithms lists the signature algorithms that verify with key: RSA keys sign with
// SHA-2 (OpenSSH ≥ 8.8 refuses ssh-rsa/SHA-1), the others with their own type.
func hostKeyAlgorithms(key ssh.PublicKey) []string {
	if key.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{key.Type()}
}

// transient reports connection-level failures: what a booting, rebooting or stopping guest
// produces.
func transient(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) ||
		(errors.As(err, &ne) && ne.Timeout())
}
