package communicator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultRebootCommand asks systemd for a clean reboot; -n fails at once if sudo wants a password.
const DefaultRebootCommand = "sudo -n systemctl reboot"

// bootIDCommand prints an identifier the kernel makes fresh on every boot: comparing it before and
// after tells the new system from the old one still shutting down (which may keep answering SSH
// for a while). A variable so tests can simulate boots.
var bootIDCommand = "cat /proc/sys/kernel/random/boot_id"

// rebootCommandTimeout bounds the reboot command itself: some guests never close the session
// cleanly, and keepalives need a few intervals to notice.
var rebootCommandTimeout = time.Minute

// Reboot reboots the guest with command (DefaultRebootCommand if empty) and waits, with
// Connect's wait logic and Config.Timeout, until SSH answers from the new boot. The disconnect
// during the command is expected; only a plain non-zero exit (sudo refused, command missing) is
// an error.
func (c *Client) Reboot(ctx context.Context, command string) error {
	if command == "" {
		command = DefaultRebootCommand
	}
	before, err := c.Output(ctx, Cmd{Command: bootIDCommand})
	if err != nil {
		return fmt.Errorf("rebooting: reading boot id: %w", err)
	}
	oldID := strings.TrimSpace(string(before))
	if oldID == "" {
		return errors.New("rebooting: empty boot id")
	}
	c.log.Debug("rebooting guest", "addr", c.cfg.Addr, "command", command, "boot_id", oldID)

	rctx, cancel := context.WithTimeout(ctx, rebootCommandTimeout)
	err = c.Run(rctx, Cmd{Command: command})
	cancel()
	var ee *ExitError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("rebooting: %w", context.Cause(ctx))
	case errors.As(err, &ee) && ee.Signal == "":
		return fmt.Errorf("rebooting: %w", err)
	case err != nil:
		// EOF, missing exit status, reset, killed by TERM as sshd shut down, or our own
		// timeout: all what a reboot looks like from here.
		c.log.Debug("reboot command ended the session", "err", err)
	}
	// The old connection is dead or about to be; drop it before waiting. Failing to close it
	// changes nothing (the guest is going down), so it is only logged.
	if old := c.detach(); old != nil {
		if err := closeConn(old); err != nil {
			c.log.Debug("closing the connection to the old boot", "addr", c.cfg.Addr, "err", err)
		}
	}

	conn, err := c.wait(ctx, func(ctx context.Context, conn *ssh.Client) error {
		id, err := bootID(ctx, conn)
		if err != nil {
			return errRetry{fmt.Errorf("reading boot id: %w", err)}
		}
		if id == oldID {
			return errRetry{errors.New("still the old system (boot id unchanged)")}
		}
		c.log.Debug("guest rebooted", "boot_id", id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebooting: %w", err)
	}
	c.setConn(conn)
	return nil
}

// bootID reads the boot id on a bare connection (before it becomes the Client's).
func bootID(ctx context.Context, conn *ssh.Client) (string, error) {
	sess, err := conn.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	stop := context.AfterFunc(ctx, func() { _ = sess.Close() })
	defer stop()
	out, err := sess.Output(bootIDCommand)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}
