package libvirt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"golang.org/x/crypto/ssh"
	"libvirt.org/go/libvirtxml"

	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
)

// Options configure a Driver. The zero value works against the local system daemon.
type Options struct {
	// URI is the daemon: qemu:///system (default), qemu+tcp://HOST[:PORT]/system or
	// qemu+ssh://[USER@]HOST[:PORT]/system (URI parameters: socket=, keyfile=, known_hosts=).
	URI string
	// Pool is the storage pool the build's images are uploaded to (default "ingot", created if
	// missing; any other pool must exist and keep its volumes as files).
	Pool   string
	Logger *slog.Logger // default: discard
	// FirmwareFinder chooses firmware for a local daemon (default firmware.NewFinder()).
	FirmwareFinder *firmware.Finder
	// ShutdownTimeout bounds how long Shutdown waits after the ACPI power button before it
	// destroys the domain (default 2 minutes; a context deadline also bounds it).
	ShutdownTimeout time.Duration
	// KeyInterval is the pause between typed keys (default 100 ms, as Packer's).
	KeyInterval time.Duration
	// ForwardAddress is the address on the libvirt host the guest's SSH forward listens on
	// (default 127.0.0.1). Only needed for qemu+tcp to another host.
	ForwardAddress string
	// SSHKeyFile and SSHKnownHosts override ~/.ssh/id_* and ~/.ssh/known_hosts for qemu+ssh
	// (the URI's keyfile= and known_hosts= take precedence).
	SSHKeyFile, SSHKnownHosts string
}

// staleVolumeAge is how old a volume of a build that no longer runs must be before a new
// Driver deletes it.
const staleVolumeAge = time.Hour

// Driver starts machines as transient domains on one libvirt daemon.
type Driver struct {
	opts      Options
	log       *slog.Logger
	target    target
	connector *connector
	pool      pool
	info      Info

	accelOnce sync.Once // the KVM probe runs once per Driver, not per machine
	autoAccel Accel

	capsMu sync.Mutex
	caps   map[string]*libvirtxml.DomainCaps
}

// Info describes the daemon a Driver talks to, for logs and the build manifest.
type Info struct {
	URI            string `json:"uri"`
	Hostname       string `json:"hostname"`
	LibvirtVersion string `json:"libvirt_version"`
	QEMUVersion    string `json:"qemu_version"`
	Pool           string `json:"pool"`
	PoolDir        string `json:"pool_dir"`
}

var _ hypervisor.Driver = (*Driver)(nil)

// New connects to the daemon (so that a wrong URI, a stopped daemon or missing permissions are
// reported before any build work), makes sure the storage pool exists, and deletes volumes that
// killed builds left in it. Close releases what New holds.
func New(ctx context.Context, opts Options) (*Driver, error) {
	if opts.URI == "" {
		opts.URI = DefaultURI
	}
	if opts.Pool == "" {
		opts.Pool = DefaultPool
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FirmwareFinder == nil {
		opts.FirmwareFinder = firmware.NewFinder()
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 2 * time.Minute
	}
	if opts.KeyInterval == 0 {
		opts.KeyInterval = 100 * time.Millisecond
	}
	if opts.ForwardAddress == "" {
		opts.ForwardAddress = "127.0.0.1"
	}
	t, err := parseURI(opts.URI)
	if err != nil {
		return nil, err
	}
	if t.transport == transportTCP && !t.loopback() && isLoopbackAddr(opts.ForwardAddress) {
		return nil, fmt.Errorf("libvirt at %s: the guests' SSH forwards would be bound to the loopback of %s, which this host cannot reach over qemu+tcp; use qemu+ssh://%s/system (SSH is then tunnelled), or set the forward address to an address of %s reachable from here (the forward is then open to anyone who can reach that address)", t, t.host, t.host, t.host)
	}
	d := &Driver{opts: opts, log: opts.Logger, target: t, connector: &connector{t: t}, caps: map[string]*libvirtxml.DomainCaps{}}
	if t.transport == transportSSH {
		cfg, err := defaultSSHConfig(t, opts.SSHKeyFile, opts.SSHKnownHosts)
		if err != nil {
			return nil, err
		}
		if d.connector.ssh, err = dialSSH(ctx, t, cfg, d.log); err != nil {
			return nil, err
		}
	}
	c, err := d.connector.connect(ctx)
	if err != nil {
		d.Close()
		return nil, err
	}
	defer c.close()
	d.info = describe(c, t)
	if d.pool, err = ensurePool(c, opts.Pool, d.log); err != nil {
		d.Close()
		return nil, fmt.Errorf("libvirt at %s: %w", t, err)
	}
	d.info.Pool, d.info.PoolDir = d.pool.name, d.pool.dir
	sweep(ctx, c, d.pool, staleVolumeAge, d.log)
	d.log.Debug("libvirt connected", "uri", t, "host", d.info.Hostname, "libvirt", d.info.LibvirtVersion, "qemu", d.info.QEMUVersion, "pool", d.pool.dir)
	return d, nil
}

func describe(c *conn, t target) Info {
	i := Info{URI: t.uri}
	i.Hostname, _ = c.ConnectGetHostname()
	if v, err := c.ConnectGetLibVersion(); err == nil {
		i.LibvirtVersion = versionString(v)
	}
	if v, err := c.ConnectGetVersion(); err == nil {
		i.QEMUVersion = versionString(v)
	}
	return i
}

// versionString decodes libvirt's major*1e6 + minor*1e3 + micro.
func versionString(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

// Info describes the daemon.
func (d *Driver) Info() Info { return d.info }

// Close releases the SSH connection of a qemu+ssh driver. Machines still running lose their
// connection with it, and libvirtd destroys their domains: close the driver after its machines.
func (d *Driver) Close() error {
	if d.connector.ssh != nil {
		return d.connector.ssh.Close()
	}
	return nil
}

// Start uploads the spec's files, starts the domain and returns once its console is captured and
// the SSH forward's port is known. The guest then boots on its own; the caller waits for SSH.
func (d *Driver) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	if spec.Incoming != "" {
		// Its machines are not Checkpointers: booting instead would pass for a restore.
		return nil, fmt.Errorf("start %s from the checkpoint %s: %w", spec.Name, spec.Incoming, hypervisor.ErrNotSupported)
	}
	if a := spec.WithDefaults().Arch; a != "x86_64" {
		// Its domain XML (devices, console, firmware) is written for q35 only.
		return nil, fmt.Errorf("start %s: an %s machine: %w (the libvirt driver builds x86_64 guests; use the qemu driver)", spec.Name, a, hypervisor.ErrNotSupported)
	}
	m, err := d.start(ctx, spec)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// accel resolves the domain type, probing KVM once per driver and warning once on fallback.
func (d *Driver) accel(ctx context.Context, c *conn, spec hypervisor.Spec) Accel {
	if spec.Accel != hypervisor.AccelAuto {
		return chooseAccel(ctx, c, spec.Arch, spec.Machine, spec.Accel)
	}
	d.accelOnce.Do(func() {
		d.autoAccel = chooseAccel(ctx, c, spec.Arch, spec.Machine, spec.Accel)
		if d.autoAccel.Fallback {
			d.log.Warn(d.autoAccel.Reason)
		} else {
			d.log.Debug(d.autoAccel.Reason)
		}
	})
	return d.autoAccel
}

// domainCaps are libvirt's domain capabilities for a domain type, arch and machine, asked once.
func (d *Driver) domainCaps(c *conn, virt, arch, machine string) (*libvirtxml.DomainCaps, error) {
	key := virt + "/" + arch + "/" + machine
	d.capsMu.Lock()
	defer d.capsMu.Unlock()
	if caps, ok := d.caps[key]; ok {
		return caps, nil
	}
	doc, err := c.ConnectGetDomainCapabilities(nil, golibvirt.OptString{arch}, golibvirt.OptString{machine}, golibvirt.OptString{virt}, 0)
	if err != nil {
		return nil, fmt.Errorf("domain capabilities (%s): %w", key, err)
	}
	caps := &libvirtxml.DomainCaps{}
	if err := caps.Unmarshal(doc); err != nil {
		return nil, fmt.Errorf("domain capabilities (%s): %w", key, err)
	}
	d.caps[key] = caps
	return caps, nil
}

// checkCaps refuses what this libvirt cannot do, before anything is uploaded.
// libvirtFormats are the disk formats libvirt attaches (its storage source formats that QEMU
// reads): not vhdx, which QEMU reads but libvirt (9.0 at least) does not know.
var libvirtFormats = []string{"raw", "qcow2", "qcow", "qed", "vmdk", "vpc", "vdi", "vhd", "dmg", "bochs", "cloop"}

func checkCaps(caps *libvirtxml.DomainCaps, spec hypervisor.Spec, up *uploads, version string) error {
	backing := up.backing
	var buses []string
	if caps.Devices != nil && caps.Devices.Disk != nil {
		for _, e := range caps.Devices.Disk.Enums {
			if e.Name == "bus" {
				buses = e.Values
			}
		}
	}
	var errs []error
	for i, disk := range spec.Disks {
		if len(buses) > 0 && !slices.Contains(buses, disk.Interface) {
			errs = append(errs, fmt.Errorf("disk %d (%s): libvirt %s has no %s disk bus (it offers %s); use another interface or the qemu driver", i, disk.Path, version, disk.Interface, strings.Join(buses, ", ")))
		}
	}
	for i, formats := range up.formats {
		for _, f := range formats {
			if !slices.Contains(libvirtFormats, f) {
				errs = append(errs, fmt.Errorf("%w: disk %d (%s) is or backs on a %s image, and libvirt %s has no %s disk format (it takes %s); convert it (qemu-img convert -O qcow2) or use the qemu driver",
					hypervisor.ErrNotSupported, i, spec.Disks[i].Path, f, version, f, strings.Join(libvirtFormats, ", ")))
				break
			}
		}
	}
	if backing && caps.Features != nil && caps.Features.BackingStoreInput != nil && caps.Features.BackingStoreInput.Supported != "yes" {
		errs = append(errs, fmt.Errorf("libvirt %s does not take backing chains from the domain XML (backingStoreInput); flatten the disks (qemu-img convert) or use the qemu driver", version))
	}
	return errors.Join(errs...)
}

// nameUnsafe is what may not go into a domain or volume name.
var nameUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// domainName is ingot-<spec name>-<8 hex>: readable in virsh list, unique across concurrent
// builds, and recognisable by the volume sweep.
func domainName(specName string) string {
	s := strings.Trim(nameUnsafe.ReplaceAllString(specName, "-"), "-.")
	if len(s) > 40 {
		s = s[:40]
	}
	if s == "" {
		s = "machine"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "ingot-" + s + "-" + hex.EncodeToString(b)
}

// checkWorkDir: the work dir holds the console log; it must be the caller's private directory,
// as for the QEMU driver.
func checkWorkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("start machine: work dir: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("start machine: work dir %s is %v; it must be private (0700)", dir, fi.Mode().Perm())
	}
	return nil
}

// sshClient is the driver's SSH connection, nil unless qemu+ssh.
func (d *Driver) sshClient() *ssh.Client { return d.connector.ssh }
