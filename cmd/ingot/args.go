package main

import (
	"context"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// runApp runs app on a command line. It is the one way in for main and for the tests, so that
// every caller parses the command line as users type it (see flagsFirst), and gets every usage
// error as a usageError (see strictUsage and usageErrorOf).
func runApp(ctx context.Context, app *cli.App, args []string) error {
	return usageErrorOf(app.RunContext(ctx, flagsFirst(app, args)))
}

// flagsFirst rewrites a command line (args[0] is the program) so that each command's flags come
// before its positional arguments. urfave/cli v2 parses with Go's flag package, which stops at the
// first positional argument: `ingot convert disk.qcow2 --to vmdk` would read "--to" and "vmdk" as
// more images. Users type flags anywhere, as with git, kubectl and docker, and our own README did.
//
// The command tree is walked as urfave will walk it: a command's leading flags, then the name of a
// subcommand, then that subcommand's arguments. Only a leaf command's arguments are reordered; a
// command with subcommands is left as written when no subcommand is named (`ingot help build`,
// `ingot frobnicate`), so urfave's help and "no command" messages stay as they are.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	return slices.Concat(args[:1], reorderTree(app.Flags, app.Commands, args[1:]))
}

// reorderTree reorders args of the command whose flags and subcommands are given.
func reorderTree(flags []cli.Flag, subs []*cli.Command, args []string) []string {
	if len(subs) == 0 {
		return reorderFlags(flags, args)
	}
	i := firstPositional(flags, args)
	if i < 0 {
		return args
	}
	for _, c := range subs {
		if c.HasName(args[i]) {
			return slices.Concat(args[:i+1], reorderTree(c.Flags, c.Subcommands, args[i+1:]))
		}
	}
	return args
}

// reorderFlags moves the flags in args, each with its value, in front of the positional
// arguments, keeping the order within each group (a repeated --var keeps its order). It follows
// Go's flag package, which urfave uses, so that the result parses as the user meant:
//   - "--" ends the flags: it and everything after it stay positional, after the moved flags;
//   - "-" alone is a positional argument (by convention, standard input);
//   - a flag that takes a value consumes the next argument, whatever it is, unless written
//     --flag=value; a bool flag consumes nothing (--json=false sets it false);
//   - a flag this command does not define moves alone, so urfave still reports it by name
//     ("flag provided but not defined: -jsn") rather than taking it for a file;
//   - a value flag left without its value at the end moves last and the positionals are dropped,
//     so urfave reports "flag needs an argument" instead of taking a positional as its value.
func reorderFlags(flags []cli.Flag, args []string) []string {
	takes := valueFlags(flags)
	var opts, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return slices.Concat(opts, args[i:i+1], pos, args[i+1:])
		case !isFlag(a):
			pos = append(pos, a)
		default:
			opts = append(opts, a)
			if !takes[flagName(a)] {
				continue
			}
			if i+1 == len(args) {
				return opts
			}
			i++
			opts = append(opts, args[i])
		}
	}
	return append(opts, pos...)
}

// firstPositional is the index of the first positional argument in args, skipping flags and
// their values, or -1 if there is none before "--".
func firstPositional(flags []cli.Flag, args []string) int {
	takes := valueFlags(flags)
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--":
			return -1
		case !isFlag(a):
			return i
		case takes[flagName(a)]:
			i++
		}
	}
	return -1
}

// valueFlags maps every name and alias of flags to whether the flag takes a value. A flag type
// that does not say is taken to want one: only bool flags do without, in Go's flag package.
func valueFlags(flags []cli.Flag) map[string]bool {
	takes := map[string]bool{}
	for _, f := range flags {
		v := true
		if d, ok := f.(cli.DocGenerationFlag); ok {
			v = d.TakesValue()
		}
		for _, n := range f.Names() {
			takes[n] = v
		}
	}
	return takes
}

// isFlag reports whether a is written as a flag: "-" and "--" are not.
func isFlag(a string) bool {
	return len(a) > 1 && a[0] == '-' && a != "--"
}

// flagName is the name in -name, --name or --name=value, or "" when a value is attached (the
// flag then consumes nothing more).
func flagName(a string) string {
	name := strings.TrimPrefix(a[1:], "-")
	if strings.Contains(name, "=") {
		return ""
	}
	return name
}
