package libvirt

import (
	"fmt"
	"regexp"
	"strconv"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// The guest's SSH port is forwarded the way the QEMU driver does it: slirp's hostfwd, bound to an
// ephemeral port on the libvirt host's loopback and read back from "info usernet", so concurrent
// builds never collide. libvirt has no hostfwd of its own (only passt's <portForward>, which needs
// libvirt ≥ 9.0 *and* the passt package, and takes fixed ports), and a NAT network would need
// dnsmasq, a bridge and the DHCP lease. So the forward is added at runtime through the QEMU monitor
// (virDomainQemuMonitorCommand, HMP hostfwd_add), before the guest is resumed. libvirt marks such
// domains "tainted: custom-monitor" in its log; harmless for a domain that lives minutes.

// userNetdev finds the netdev id libvirt gave the user-mode interface ("hostnet0").
var userNetdev = regexp.MustCompile(`\\\s+(\S+): index=\d+,type=user`)

// usernetForward matches a host forward in "info usernet": bound address, port, guest port.
var usernetForward = regexp.MustCompile(`TCP\[HOST_FORWARD\]\s+\d+\s+(\S+)\s+(\d+)\s+\S+\s+(\d+)`)

// addForward forwards bind:0 on the libvirt host to the guest's port and returns the bound port.
func addForward(c *conn, dom golibvirt.Domain, bind string, guestPort int) (int, error) {
	info, err := c.QEMUDomainMonitorCommand(dom, "info network", hmp)
	if err != nil {
		return 0, fmt.Errorf("SSH forward: info network: %w", err)
	}
	m := userNetdev.FindStringSubmatch(info)
	if m == nil {
		return 0, fmt.Errorf("SSH forward: no user-mode network in %q", info)
	}
	cmd := fmt.Sprintf("hostfwd_add %s tcp:%s:0-:%d", m[1], bind, guestPort)
	// HMP reports failure as text with a nil error.
	if out, err := c.QEMUDomainMonitorCommand(dom, cmd, hmp); err != nil {
		return 0, fmt.Errorf("SSH forward: %s: %w", cmd, err)
	} else if out != "" {
		return 0, fmt.Errorf("SSH forward: %s: %s", cmd, out)
	}
	usernet, err := c.QEMUDomainMonitorCommand(dom, "info usernet", hmp)
	if err != nil {
		return 0, fmt.Errorf("SSH forward: info usernet: %w", err)
	}
	return parseForward(usernet, bind, guestPort)
}

func parseForward(usernet, bind string, guestPort int) (int, error) {
	for _, f := range usernetForward.FindAllStringSubmatch(usernet, -1) {
		if f[1] == bind && f[3] == strconv.Itoa(guestPort) {
			return strconv.Atoi(f[2])
		}
	}
	return 0, fmt.Errorf("SSH forward: no forward from %s to guest port %d in %q", bind, guestPort, usernet)
}
