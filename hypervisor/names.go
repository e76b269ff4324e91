package hypervisor

import (
	"fmt"
	"slices"
	"strings"
)

// DriverName names a hypervisor driver: what a recipe's machine.driver and `ingot build --driver`
// take, and what a manifest records as the driver a build ran on. Defined once here, beside the
// Driver interface the names stand for, so that the CLI, the pipeline and the manifest cannot
// disagree on a spelling.
type DriverName string

const (
	// DriverQEMU is ingot running QEMU itself as a child process (package qemu); the default.
	DriverQEMU DriverName = "qemu"
	// DriverLibvirt is transient domains on a local or remote libvirtd (package libvirt).
	DriverLibvirt DriverName = "libvirt"
)

// DriverNames returns every driver name, the default first: the order help and errors list them.
func DriverNames() []DriverName { return []DriverName{DriverQEMU, DriverLibvirt} }

// ParseDriverName returns s as a DriverName, or an error that quotes s and lists the names: a
// caller prefixes where s came from ("--driver", "machine.driver").
func ParseDriverName(s string) (DriverName, error) {
	return parseName(s, DriverNames())
}

// Accel names the accelerator a machine asks for: what a recipe's machine.accel, `ingot build
// --accel` and Spec.Accel take.
type Accel string

const (
	// AccelAuto is KVM when it works on this host, else TCG with a warning; the default.
	AccelAuto Accel = "auto"
	// AccelKVM is hardware virtualisation; asking for it fails where KVM does not work.
	AccelKVM Accel = "kvm"
	// AccelTCG is QEMU's software emulation: ten or more times slower, but it works anywhere.
	AccelTCG Accel = "tcg"
)

// Accels returns every accelerator name, the default first: the order help and errors list them.
func Accels() []Accel { return []Accel{AccelAuto, AccelKVM, AccelTCG} }

// ParseAccel returns s as an Accel, or an error that quotes s and lists the names: a caller
// prefixes where s came from ("--accel", "machine.accel").
func ParseAccel(s string) (Accel, error) {
	return parseName(s, Accels())
}

// parseName returns s as one of names, or an error like `"vbox": want qemu or libvirt`.
func parseName[T ~string](s string, names []T) (T, error) {
	if slices.Contains(names, T(s)) {
		return T(s), nil
	}
	return "", fmt.Errorf("%q: want %s", s, Choices(names))
}

// Choices lists names as help text and errors say them: "auto, kvm or tcg".
func Choices[T ~string](names []T) string {
	words := make([]string, len(names))
	for i, n := range names {
		words[i] = string(n)
	}
	last := len(words) - 1
	if last <= 0 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:last], ", ") + " or " + words[last]
}
