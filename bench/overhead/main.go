// Command overhead prints the overhead table of bench/overhead.sh from a build's manifest.json:
// each step's wall time, the part spent waiting on the guest or on qemu-img, and the rest, which
// is ingot's own work. The process's wall time, measured by the script around `ingot build`,
// adds what no step covers (start-up, recipe loading, publishing).
package main

import (
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/ingot-build/ingot/manifest"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: overhead MANIFEST.json START END (Unix seconds around ingot build)")
		os.Exit(2)
	}
	m, err := manifest.Read(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start, err1 := strconv.ParseFloat(os.Args[2], 64)
	end, err2 := strconv.ParseFloat(os.Args[3], 64)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "START and END must be Unix times in seconds, e.g. 1763856000.123")
		os.Exit(2)
	}
	wall := end - start
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "step\twall s\twaiting s\tingot s\t")
	var steps, waiting float64
	for _, s := range m.Steps {
		fmt.Fprintf(w, "%s\t%.3f\t%.3f\t%.3f\t\n", s.Step, s.Seconds, s.Waiting, s.Seconds-s.Waiting)
		steps += s.Seconds
		waiting += s.Waiting
	}
	fmt.Fprintf(w, "all steps\t%.3f\t%.3f\t%.3f\t\n", steps, waiting, steps-waiting)
	fmt.Fprintf(w, "outside steps\t%.3f\t\t%.3f\t\n", wall-steps, wall-steps)
	fmt.Fprintf(w, "ingot build\t%.3f\t%.3f\t%.3f\t\n", wall, waiting, wall-waiting)
	w.Flush()
	verdict := "met"
	if wall-waiting >= 2 {
		verdict = "NOT met"
	}
	fmt.Printf("\ningot's own overhead: %.3f s of %.1f s (goal: under 2 s: %s)\n", wall-waiting, wall, verdict)
}
