package main

import (
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/urfave/cli/v2"
)

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:      "ingot",
		Usage:     "bake golden VM images from pinned sources with QEMU",
		Version:   fmt.Sprintf("%s (commit %s)", version, commit),
		Writer:    stdout,
		ErrWriter: stderr,
		// cli v2 would call os.Exit itself on some errors; main maps errors to exit codes instead.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   onUsageError,
		HideVersion:    true,
		Commands: []*cli.Command{
			buildCommand(),
			validateCommand(),
			recipesCommand(),
			imagesCommand(),
			cacheCommand(),
			inspectCommand(),
			convertCommand(),
			testCommand(),
			diffCommand(),
			verifyCommand(),
			pushCommand(),
			pullCommand(),
			flashCommand(),
			versionCommand(),
		},
		Action: groupAction(cli.ShowAppHelp),
	}
	strictUsage(app.Commands)
	return app
}

// strictUsage makes every command below the app report bad usage as a usageError, so that
// main exits 2 for it (README: "2 bad usage or recipe") whichever command was mistyped:
//   - cli v2 calls the OnUsageError of the command whose flags failed to parse, never the app's:
//     without one it prints "Incorrect Usage" and the whole help on stdout, and returns the bare
//     flag error, which exits 1;
//   - a command with subcommands and no action of its own gets the app's: cli v2's default
//     answers an unknown subcommand with "No help topic for …";
//   - a leaf command that declares no ArgsUsage takes no arguments, rather than ignoring them.
//
// Usage errors that cli v2 returns without calling any hook are classified by usageErrorOf.
func strictUsage(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		switch {
		case len(c.Subcommands) > 0 && c.Action == nil:
			c.Action = groupAction(cli.ShowSubcommandHelp)
		case len(c.Subcommands) == 0 && c.ArgsUsage == "":
			c.Before = noArgs(c.Before)
		}
		strictUsage(c.Subcommands)
	}
}

// onUsageError is every command's OnUsageError: cli's message (which names the flag) and where
// to read the command's usage, as one line on stderr instead of the whole help on stdout.
func onUsageError(c *cli.Context, err error, _ bool) error {
	return usageError{fmt.Errorf("%w; see '%s --help'", err, c.Command.HelpName)}
}

// groupAction is the action of the app and of each command that only groups subcommands: help
// when no subcommand is named, and a usage error naming the word that is not one.
func groupAction(help cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.Args().Present() {
			return usageError{fmt.Errorf("no command %q; see '%s --help'", c.Args().First(), c.Command.HelpName)}
		}
		return help(c)
	}
}

// noArgs wraps a command's Before so that the command refuses positional arguments: a word
// typed after `ingot version` or `ingot images ls` is a mistake the user should hear about. It
// is a Before, not part of the Action, so that a command's flags are checked first, as always.
func noArgs(before cli.BeforeFunc) cli.BeforeFunc {
	return func(c *cli.Context) error {
		if c.Args().Present() {
			return usageError{fmt.Errorf("'%s' takes no arguments, got %q", c.Command.HelpName, c.Args().Slice())}
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
}

// usageErrorOf returns err, as a usageError if it is one of the usage errors cli v2 returns
// without calling OnUsageError:
//   - a required flag left unset ("Required flag "to" not set");
//   - `ingot help NAME` for no such command: cli.Exit("No help topic for …", 3). ingot's own
//     commands never return a cli.ExitCoder, since main alone maps errors to exit codes.
func usageErrorOf(err error) error {
	if err == nil || errors.As(err, new(usageError)) {
		return err
	}
	var exit cli.ExitCoder
	if errors.As(err, &exit) || isRequiredFlagsErr(err) {
		return usageError{err}
	}
	return err
}

// isRequiredFlagsErr reports whether err is cli v2's error for a required flag left unset. cli v2
// keeps its type unexported (errRequiredFlags, behind the interface requiredFlagsErr whose one
// method, getMissingFlags, is unexported too), so neither a type assertion nor an errors.As
// target can name it, and its message is no contract. The type is learned from cli itself
// instead: an app with one required flag, run without it, returns that error, and errors.As
// looks for a value of the same type in err's chain. TestUsageErrorsExit2 fails if cli changes.
func isRequiredFlagsErr(err error) bool {
	probe := (&cli.App{
		Name:           "probe",
		Writer:         io.Discard, // cli prints the help before returning the error
		ErrWriter:      io.Discard,
		ExitErrHandler: func(*cli.Context, error) {},
		Flags:          []cli.Flag{&cli.BoolFlag{Name: "probe", Required: true}},
		Action:         func(*cli.Context) error { return nil },
	}).Run([]string{"probe"})
	return probe != nil && errors.As(err, reflect.New(reflect.TypeOf(probe)).Interface())
}
