package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/recipes"
)

// TestRecipeNamesMatchHypervisor keeps the recipe loader's machine.driver and machine.accel
// names in step with hypervisor's, which are the one definition: recipes may not import
// hypervisor (shared/DESIGN.md: recipes knows no QEMU), so it spells the names itself, and this
// test is what fails when the two drift apart.
func TestRecipeNamesMatchHypervisor(t *testing.T) {
	load := func(machine string) (*recipes.Recipe, error) {
		y := "name: n\nsource:\n  disk: { url: https://example.org/d.qcow2, sha256: " + strings.Repeat("a", 64) + " }\n" + machine
		return recipes.LoadBytes("r.yaml", []byte(y), t.TempDir(), nil, nil)
	}
	def, err := load("")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := def.Machine.Accel, string(hypervisor.Accels()[0]); got != want {
		t.Errorf("a recipe's default machine.accel = %q, hypervisor's default = %q", got, want)
	}
	if got, want := def.Machine.Driver, string(hypervisor.DriverNames()[0]); got != want {
		t.Errorf("a recipe's default machine.driver = %q, hypervisor's default = %q", got, want)
	}
	var cases []string
	for _, a := range hypervisor.Accels() {
		cases = append(cases, fmt.Sprintf("accel: %s", a))
	}
	for _, d := range hypervisor.DriverNames() {
		cases = append(cases, fmt.Sprintf("driver: %s", d))
	}
	for _, c := range cases {
		if _, err := load("machine: { " + c + " }\n"); err != nil {
			t.Errorf("hypervisor knows %q, the recipe loader refuses it: %v", c, err)
		}
	}
	for _, c := range []string{"accel: hvf", "driver: vbox"} {
		if _, err := load("machine: { " + c + " }\n"); err == nil {
			t.Errorf("the recipe loader takes %q, which hypervisor does not know", c)
		}
	}
}
