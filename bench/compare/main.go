// Command compare prints two or more builds' manifests side by side, step by step (wall seconds),
// with each build's total and its ratio to the first: bench/drivers.sh uses it to put the qemu and
// libvirt drivers' builds of the same recipe next to each other.
package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ingot-build/ingot/manifest"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: compare LABEL=MANIFEST.json LABEL=MANIFEST.json…")
		os.Exit(2)
	}
	var labels []string
	var ms []*manifest.Manifest
	for _, arg := range os.Args[1:] {
		label, path, ok := strings.Cut(arg, "=")
		if !ok || label == "" || path == "" {
			fmt.Fprintf(os.Stderr, "%s: want LABEL=MANIFEST.json\n", arg)
			os.Exit(2)
		}
		m, err := manifest.Read(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		labels = append(labels, label)
		ms = append(ms, m)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(w, "step\t")
	for _, l := range labels {
		fmt.Fprintf(w, "%s s\t", l)
	}
	fmt.Fprintln(w)
	var order []string
	seconds := make([]map[string]float64, len(ms))
	totals := make([]float64, len(ms))
	for i, m := range ms {
		seconds[i] = map[string]float64{}
		for _, s := range m.Steps {
			if !slices.Contains(order, s.Step) {
				order = append(order, s.Step)
			}
			seconds[i][s.Step] += s.Seconds
			totals[i] += s.Seconds
		}
	}
	for _, step := range order {
		fmt.Fprintf(w, "%s\t", step)
		for i := range ms {
			fmt.Fprintf(w, "%.3f\t", seconds[i][step])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, "all steps\t")
	for i := range ms {
		fmt.Fprintf(w, "%.3f\t", totals[i])
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "ratio to the first\t")
	for i := range ms {
		fmt.Fprintf(w, "%.3f\t", totals[i]/totals[0])
	}
	fmt.Fprintln(w)
	w.Flush()
}
