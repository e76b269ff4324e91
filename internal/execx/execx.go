// Package execx runs external tools (qemu-img, ssh-keygen, …) so that every failure says what was run
// and what the tool said: an error carries the argv, quoted so a person can paste it into a shell, the
// exit status, and the tail of stderr.
//
// Every command started here dies with ingot (Start): a qemu-img or xz left running after a crash
// would go on writing, and nothing would be left to wait for it.
package execx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
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

// Output runs name with args and returns its stdout. The command is killed when ctx ends, and
// when ingot dies (Start).
func Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	wait, err := Start(cmd)
	if err == nil {
		err = wait()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return stdout.Bytes(), &Error{Argv: cmd.Args, Stderr: tail(stderr.Bytes()), Err: err}
	}
	return stdout.Bytes(), nil
}

// Start starts cmd so that the kernel kills it (SIGKILL) if ingot dies first, and returns the
// function that waits for it, as cmd.Wait would; it may be called more than once. The errors
// are cmd.Start's and cmd.Wait's, not yet an *Error: the caller knows what the command was for.
//
// The parent-death signal (PR_SET_PDEATHSIG, Linux) fires when the thread that forked the child
// exits, not the process, and the Go runtime ends threads of its own accord. So the child is
// started and waited for on a goroutine locked to its thread and never unlocked: that thread
// exits only with the goroutine, once the child is gone, or with ingot.
func Start(cmd *exec.Cmd) (wait func() error, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return sync.OnceValue(func() error { return <-done }), nil
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
