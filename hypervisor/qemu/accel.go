package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/internal/execx"
)

// Accel is the accelerator a machine runs with, and why it was chosen.
type Accel struct {
	Name   hypervisor.Accel // AccelKVM or AccelTCG, never AccelAuto
	CPU    string           // the -cpu model that goes with it: "host" under KVM, "max" under TCG
	Reason string           // one line a user can act on
	// Fallback is set when KVM was wanted (auto) but is unusable, so the build runs under
	// software emulation, ten or more times slower: worth a visible warning.
	Fallback bool
}

// kvmProbeTimeout bounds the probe. On a working KVM host SeaBIOS reaches its first debug line in
// well under 100 ms; on a broken one QEMU either aborts at once or the vCPU never runs.
const kvmProbeTimeout = 3 * time.Second

// ChooseAccel resolves want (auto, kvm or tcg) for a guest of arch (x86_64, aarch64) run by the
// qemu-system-ARCH binary at bin.
//
// A bare /dev/kvm check is not enough: on nested or restricted hosts /dev/kvm opens, KVM_CREATE_VM
// succeeds, and yet QEMU aborts setting up a "-cpu host" vCPU (e.g. "failed to set MSR 0x10a") or the
// guest never executes. So auto asks QEMU itself: for x86_64 it starts the real binary with -accel
// kvm -cpu host on a tiny machine and waits for SeaBIOS to report, on its debug port, that it is
// running on KVM. That proves what a build needs (QEMU + KVM + this CPU model run guest code) in
// about 100 ms. KVM runs guests of the host's own architecture only, so an aarch64 guest on an
// x86_64 host (or the reverse) is TCG, with the same warning as a host without KVM.
func ChooseAccel(ctx context.Context, bin, arch string, want hypervisor.Accel) Accel {
	tcg := Accel{Name: hypervisor.AccelTCG, CPU: tcgCPU(arch)}
	switch want {
	case hypervisor.AccelTCG:
		tcg.Reason = "software emulation (TCG) was asked for"
		return tcg
	case hypervisor.AccelKVM:
		return Accel{Name: hypervisor.AccelKVM, CPU: "host", Reason: "KVM was asked for (not probed)"}
	}
	if err := probeKVM(ctx, bin, arch); err != nil {
		tcg.Reason = "KVM is not usable here, so guests run under software emulation (TCG), much slower: " + err.Error()
		tcg.Fallback = true
		return tcg
	}
	return Accel{Name: hypervisor.AccelKVM, CPU: "host", Reason: "KVM works here (probed: QEMU ran guest code with -accel kvm -cpu host)"}
}

// tcgCPU is the -cpu model under TCG: "max", every feature QEMU emulates. For aarch64 with
// pointer authentication's implementation-defined algorithm instead of QARMA5, which QEMU's
// documentation recommends for speed under emulation: guests see pointer authentication either
// way, and nothing outside the guest sees the signed pointers.
func tcgCPU(arch string) string {
	if arch == "aarch64" {
		return "max,pauth-impdef=on"
	}
	return "max"
}

// hostArch is this machine's architecture as QEMU names it.
func hostArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

func probeKVM(ctx context.Context, bin, arch string) error {
	if h := hostArch(); arch != h {
		return fmt.Errorf("KVM runs guests of the host's own architecture only (this host is %s, the guest %s)", h, arch)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errors.New("/dev/kvm does not exist (no hardware virtualisation, or the kvm module is not loaded)")
	case errors.Is(err, os.ErrPermission):
		return errors.New("no permission to open /dev/kvm (add the user to the kvm group)")
	case err != nil:
		return fmt.Errorf("open /dev/kvm: %w", err)
	}
	f.Close()

	dir, err := os.MkdirTemp("", "ingot-kvm-probe-")
	if err != nil {
		return fmt.Errorf("probe KVM: %w", err)
	}
	defer os.RemoveAll(dir)
	debug := filepath.Join(dir, "debugcon")

	ctx, cancel := context.WithTimeout(ctx, kvmProbeTimeout)
	defer cancel()
	args := []string{"-accel", "kvm", "-cpu", "host", "-nodefaults", "-no-user-config", "-display", "none"}
	var ready func() bool
	if arch == "x86_64" {
		args = append(args, "-machine", "q35", "-m", "32", "-debugcon", "file:"+debug, "-global", "isa-debugcon.iobase=0x402")
		ready = func() bool {
			b, _ := os.ReadFile(debug)
			return bytes.Contains(b, []byte("Running on KVM"))
		}
	} else {
		// aarch64's virt machine has no SeaBIOS to report: QEMU runs it with no firmware and
		// must still be running a second later. KVM failures (no vCPU of this model, a run that
		// fails) end QEMU at once with an error, so this catches what the x86 probe catches,
		// short of proving that guest code ran. Not exercised on the x86_64 machines ingot's
		// tests run on.
		args = append(args, "-machine", "virt", "-m", "64")
		started := time.Now()
		ready = func() bool { return time.Since(started) >= kvmRunsFor }
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	wait, err := execx.Start(cmd)
	if err != nil {
		return fmt.Errorf("probe KVM: start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- wait() }()
	defer func() {
		_ = cmd.Process.Kill() // the probe has its answer; a no-op once QEMU has exited
		<-exited
	}()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err // for the deferred wait
			return fmt.Errorf("QEMU exited during the KVM probe (%v): %s", err, firstLine(stderr.String()))
		case <-ctx.Done():
			return fmt.Errorf("QEMU with -accel kvm ran no guest code within %s", kvmProbeTimeout)
		case <-tick.C:
			if ready() {
				return nil
			}
		}
	}
}

// kvmRunsFor is how long the aarch64 probe wants QEMU to keep a KVM vCPU running.
const kvmRunsFor = time.Second

// firstLine is the head of QEMU's stderr: its own "error:" line comes before assertion noise.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if _, rest, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(line, "qemu-system") {
		return rest
	}
	return line
}
