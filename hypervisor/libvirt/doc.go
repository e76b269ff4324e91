// Package libvirt runs build machines as transient libvirt domains, on this host's libvirtd or on
// another host's, through go-libvirt's pure-Go RPC client (no libvirt C library, no virsh).
//
// Why libvirt at all, when the qemu driver exists: some hosts are managed through libvirt (its
// users, its storage, its policies), and a remote libvirtd lets a laptop bake on a server. The
// pipeline's contract stays hypervisor.Machine's; what differs is below.
//
// Life of a machine (Start, then Shutdown, Wait or Kill):
//  1. Disks, kernel and initrd are uploaded into a storage pool (default "ingot", a directory
//     pool under /var/lib/libvirt/images/ingot, created if missing) as volumes named after the
//     domain. A pool, rather than pointing the domain at ingot's files: QEMU runs as libvirt-qemu,
//     which cannot read ingot's private (0700) work dir, and a remote daemon cannot read this
//     host's files at all. A qcow2 overlay goes up with its backing chain as it is (the base is
//     compressed; flattening would send it decompressed), the chain spelled out in the domain XML
//     (chain.go). Holes are not sent (transfer.go).
//  2. The domain is created transient (never defined: a crash leaves no definition behind),
//     paused, and with VIR_DOMAIN_START_AUTODESTROY: libvirtd destroys it when the connection
//     that created it closes, whatever killed ingot. Its name is ingot-<spec name>-<8 hex>.
//  3. Before it runs: lifecycle events are subscribed (events.go maps them to the QMP names the
//     pipeline knows), the serial console is attached (virDomainOpenConsole, on a connection of
//     its own: stream.go; the bytes go to the local console log as they arrive, also from a
//     remote daemon), and the SSH forward is added (forward.go). Then it is resumed.
//  4. When the domain ends (the guest powered off, panicked, was shut down or killed), the
//     writable disks are downloaded over their local files, so the bake pipeline finds the guest's
//     writes where it left its disk; then every volume the build made is deleted. Done is closed,
//     and Shutdown, Wait and Kill return, only after that. A build ingot could not clean up (it
//     was SIGKILLed) leaves volumes, which the next Driver deletes once they are an hour old.
//
// The domain type is kvm only when KVM is proven to work on the libvirt host (accel.go), else
// qemu (TCG), with a warning. Firmware is chosen by the firmware package for a local daemon, as
// the QEMU driver does, and by libvirt's autoselection for a remote one (firmware.go).
//
// The SSH forward is on the libvirt host's loopback. For a local daemon, and for qemu+tcp to
// 127.0.0.1, SSHAddr is that address. For qemu+ssh, SSHAddr is a local port tunnelled over the
// same SSH connection as libvirt's (ssh.go). For qemu+tcp to another host the loopback is out of
// reach: New refuses unless Options.ForwardAddress names an address of that host this one can
// reach (the forward is then open to anyone who can reach it too).
//
// Spec.ExtraArgs go to <qemu:commandline> as they are; libvirt does not know about what they add,
// so a -device there must carry its own bus and address, or it may collide with libvirt's.
//
// Not supported: TLS and SASL transports, session daemons, NVMe disks on a libvirt whose domain
// capabilities do not list the nvme bus (Debian 12's 9.0 does not), combined (code+vars) UEFI
// flash images.
package libvirt
