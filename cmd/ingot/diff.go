package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/drift"
)

// diffFormats are the report formats of `ingot diff --format`.
func diffFormats() []string { return []string{"text", "json", "markdown"} }

// diffCommand is `ingot diff A B`: what changed from build A to build B, and whether it
// crosses the --fail-on thresholds. Its exit codes are its interface for CI (docs/drift.md), as
// diffoscope's are: 0 within the thresholds, 1 a threshold crossed, 2 anything else that went
// wrong (bad usage, an input it cannot read). An error never exits 1, so that a CI job cannot
// mistake a broken gate for drift, or drift for a broken gate.
func diffCommand() *cli.Command {
	return &cli.Command{
		Name:  "diff",
		Usage: "what changed between two builds: packages, files, setuid files, sizes, outputs; --fail-on gates CI",
		Description: "A (the baseline) and B are each an output directory (holding manifest.json), a manifest.json,\n" +
			"or image:NAME. Exit codes: 0 within the thresholds, 1 a threshold crossed (named on stderr),\n" +
			"2 bad usage or an unreadable input, never 1 for an error. See docs/drift.md.\n\n" +
			"Metrics for --fail-on:\n" + metricHelp(),
		ArgsUsage: "A B",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON (same as --format json)"},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "report `FORMAT`: " + strings.Join(diffFormats(), ", ")},
			&cli.StringSliceFlag{Name: "fail-on", Usage: "exit 1 when `EXPR` holds, such as 'packages.changed>0' or 'size.growth>5%' (quoted: > is a shell redirection; repeatable)"},
			&cli.StringSliceFlag{Name: "ignore", Usage: "leave paths matching `GLOB` out, with the default noise list (repeatable)"},
			storeFlag,
		},
		Action: func(c *cli.Context) error {
			crossed, err := runDiff(c)
			if err != nil {
				// Whatever went wrong, it is not drift: exit 2, never 1.
				return usageError{err}
			}
			if len(crossed) == 0 {
				return nil
			}
			for _, x := range crossed {
				fmt.Fprintf(c.App.ErrWriter, "ingot: threshold crossed: %s\n", x)
			}
			return errThresholdCrossed
		},
	}
}

// errThresholdCrossed is `ingot diff`'s exit 1: the crossed thresholds were printed already.
var errThresholdCrossed = fmt.Errorf("threshold crossed: %w", errReported)

// runDiff checks the command line, loads both builds, compares them, writes the report to
// stdout and returns the thresholds it crosses.
func runDiff(c *cli.Context) ([]drift.Crossed, error) {
	if c.NArg() != 2 {
		return nil, fmt.Errorf("name two builds to compare, A (the baseline) and B, got %d argument(s); see '%s --help'", c.NArg(), c.Command.HelpName)
	}
	format := c.String("format")
	if c.Bool("json") {
		if c.IsSet("format") && format != "json" {
			return nil, fmt.Errorf("--json and --format %s disagree: give one", format)
		}
		format = "json"
	}
	if !slices.Contains(diffFormats(), format) {
		return nil, fmt.Errorf("--format %q: want one of %s", format, strings.Join(diffFormats(), ", "))
	}
	thresholds, err := drift.ParseThresholds(c.StringSlice("fail-on"))
	if err != nil {
		return nil, fmt.Errorf("--fail-on: %w", err)
	}
	opts := drift.Options{Ignore: c.StringSlice("ignore")}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("--ignore: %w", err)
	}
	var sides [2]drift.Side
	resolve := func(name string) (string, error) {
		store, err := openStore(c)
		if err != nil {
			return "", err
		}
		return store.RecordDir(name)
	}
	for i, arg := range c.Args().Slice() {
		if sides[i], err = drift.Load(arg, resolve); err != nil {
			return nil, err
		}
	}
	report := drift.Compare(sides[0], sides[1], opts)
	// Checked before anything is printed: a threshold that cannot be evaluated is an error,
	// and an error's output is its message alone, not a report that looks like a result.
	crossed, err := report.Check(thresholds)
	if err != nil {
		return nil, err
	}
	switch format {
	case "json":
		err = report.WriteJSON(c.App.Writer)
	case "markdown":
		err = report.WriteMarkdown(c.App.Writer)
	default:
		err = report.WriteText(c.App.Writer)
	}
	if err != nil {
		return nil, fmt.Errorf("write the report: %w", err)
	}
	return crossed, nil
}

// metricHelp lists the metrics --fail-on takes, one a line with what it counts, for --help.
func metricHelp() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, m := range drift.Metrics() {
		fmt.Fprintf(w, "  %s\t%s\n", m.Name, m.Doc)
	}
	w.Flush()
	return strings.TrimRight(b.String(), "\n")
}
