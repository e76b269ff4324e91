// Command ingot bakes golden VM images: it boots a temporary QEMU guest from a pinned cloud image or
// installer ISO, provisions it over SSH and converts its disk into the images users import or flash.
//
// This file owns process-level concerns only: signals, logging setup and mapping errors to exit
// codes (0 ok, 1 build failed, 2 bad usage or recipe, 130 interrupted). urfave/cli stays inside cmd/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Set at link time by the Makefile: -X main.version=… -X main.commit=….
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes, as DESIGN.md defines them.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := runApp(ctx, newApp(stdout, stderr), args)
	code := exitCode(ctx, err)
	if err != nil && !errors.Is(err, errReported) && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "ingot: %v\n", err)
	}
	return code
}

// errReported marks an error whose message the command already printed in full.
var errReported = errors.New("reported")

// usageError is bad input from the user: wrong flags, a broken recipe.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitCode(ctx context.Context, err error) int {
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, new(usageError)):
		return exitUsage
	default:
		return exitFailed
	}
}
