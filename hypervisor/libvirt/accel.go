package libvirt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/ingot-build/ingot/hypervisor"
	"libvirt.org/go/libvirtxml"
)

// Accel is the domain type a machine runs as, and why it was chosen.
type Accel struct {
	Virt   string // libvirt domain type: "kvm", or "qemu" (TCG, software emulation)
	Reason string
	// Fallback is set when KVM was wanted (auto) but is unusable, so the build runs under
	// software emulation, ten or more times slower: worth a visible warning.
	Fallback bool
}

// chooseAccel resolves want (auto, kvm or tcg). Auto asks libvirt whether it offers KVM at all (its
// domain capabilities), then proves it: libvirt's answer only says /dev/kvm is there, and on
// nested or restricted hosts (this project's CI among them) QEMU then aborts setting up a
// host-passthrough vCPU ("failed to set MSR 0x10a"). The proof is the QEMU driver's, done through
// libvirt: a tiny transient KVM domain with a host-passthrough CPU and no disks is started, and
// its vCPU must have left the reset vector (SeaBIOS ran) within probeTimeout.
func chooseAccel(ctx context.Context, c *conn, arch, machine string, want hypervisor.Accel) Accel {
	tcg := Accel{Virt: "qemu"}
	switch want {
	case hypervisor.AccelTCG:
		tcg.Reason = "software emulation (TCG) was asked for"
		return tcg
	case hypervisor.AccelKVM:
		return Accel{Virt: "kvm", Reason: "KVM was asked for (not probed)"}
	}
	if err := probeKVM(ctx, c, arch, machine); err != nil {
		tcg.Reason = "KVM is not usable on the libvirt host, so guests run under software emulation (TCG), much slower: " + err.Error()
		tcg.Fallback = true
		return tcg
	}
	return Accel{Virt: "kvm", Reason: "KVM works on the libvirt host (probed: a KVM domain with a host-passthrough CPU ran guest code)"}
}

const probeTimeout = 5 * time.Second

// ipRegister finds the instruction pointer in "info registers" (EIP outside long mode, where
// SeaBIOS runs; RIP in it).
var ipRegister = regexp.MustCompile(`\b[ER]IP=([0-9a-f]+)`)

// ranGuestCode reports whether "info registers" shows a vCPU that has left the reset vector
// (0xfff0, where an x86 vCPU starts; SeaBIOS leaves it within microseconds of running).
func ranGuestCode(registers string) bool {
	m := ipRegister.FindStringSubmatch(registers)
	return m != nil && strings.TrimLeft(m[1], "0") != "fff0"
}

func probeKVM(ctx context.Context, c *conn, arch, machine string) error {
	if _, err := c.ConnectGetDomainCapabilities(nil, golibvirt.OptString{arch}, golibvirt.OptString{machine}, golibvirt.OptString{"kvm"}, 0); err != nil {
		return fmt.Errorf("libvirt offers no KVM domains: %w", err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	x := libvirtxml.Domain{
		Type:   "kvm",
		Name:   "ingot-kvm-probe-" + hex.EncodeToString(suffix),
		Memory: &libvirtxml.DomainMemory{Value: 32, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: arch, Machine: machine, Type: "hvm"}},
		CPU:    &libvirtxml.DomainCPU{Mode: "host-passthrough", Check: "none"},
		Devices: &libvirtxml.DomainDeviceList{
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			MemBalloon:  &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	doc, err := x.Marshal()
	if err != nil {
		return err
	}
	dom, err := c.DomainCreateXML(doc, golibvirt.DomainStartAutodestroy)
	if err != nil {
		return fmt.Errorf("libvirt could not start a KVM domain: %s", firstLine(err.Error()))
	}
	defer func() { _ = c.DomainDestroy(dom) }()
	deadline := time.Now().Add(probeTimeout)
	for {
		out, err := c.QEMUDomainMonitorCommand(dom, "info registers", hmp)
		if err != nil {
			return fmt.Errorf("the KVM domain stopped: %s", firstLine(err.Error()))
		}
		if ranGuestCode(out) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the KVM domain ran no guest code within %s", probeTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// hmp is VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP: the command is human-monitor text.
const hmp = 1

// firstLine keeps the head of a libvirt error, which quotes QEMU's stderr (assertion noise after
// QEMU's own message).
func firstLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if i := strings.Index(l, "qemu-system"); i >= 0 {
			if _, rest, ok := strings.Cut(l[i:], ": "); ok {
				return strings.TrimPrefix(rest, "error: ")
			}
		}
	}
	return lines[0]
}
