// Package execx runs external tools (qemu-img, ssh-keygen, …) so that every failure says what was run
// and what the tool said: an error carries the argv, quoted so a person can paste it into a shell, the
// exit status, and the tail of stderr.
package execx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// stderrTail bounds how much of a tool's stderr goes into an error: enough for the real message,
// not a page of progress output.
const stderrTail = 2048

// Error is a failed command.
type Error struct {
	Argv   []string
	Stderr string // the last stderrTail bytes
	Err    error  // *exec.ExitError, context error, or start failure
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %v", Quote(e.Argv), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Output runs name with args and returns its stdout. The command is killed when ctx ends.
func Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return stdout.Bytes(), &Error{Argv: cmd.Args, Stderr: tail(stderr.Bytes()), Err: err}
	}
	return stdout.Bytes(), nil
}

// Run is Output for commands whose stdout does not matter.
func Run(ctx context.Context, name string, args ...string) error {
	_, err := Output(ctx, name, args...)
	return err
}

func tail(b []byte) string {
	if len(b) > stderrTail {
		b = b[len(b)-stderrTail:]
	}
	return string(b)
}

// Quote renders argv as one shell command line that reproduces it when pasted.
func Quote(argv []string) string {
	var sb strings.Builder
	for i, a := range argv {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(quoteArg(a))
	}
	return sb.String()
}

func quoteArg(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
