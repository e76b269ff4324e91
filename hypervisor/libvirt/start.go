package libvirt

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/ingot-build/ingot/hypervisor"
)

// start is Start. Its steps, in order: check the spec; connect (the machine's own connection);
// choose the domain type and firmware; plan and check the uploads; upload; create the domain
// paused; attach to it (events, console, SSH forward); resume it. Whatever fails, what was taken
// is given back in reverse (undo).
func (d *Driver) start(ctx context.Context, spec hypervisor.Spec) (_ *Machine, err error) {
	// m is not the named result: a failed start returns nil, and the undo functions below,
	// which run after that, still need the machine they undo.
	var m *Machine
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := checkWorkDir(spec.WorkDir); err != nil {
		return nil, err
	}
	name := domainName(spec.Name)
	at := fmt.Sprintf("start machine %s on %s", name, d.target)

	c, err := d.connector.connect(ctx)
	if err != nil {
		return nil, err
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	undo = append(undo, func() { _ = c.close() })

	accel := d.accel(ctx, c, spec)
	caps, err := d.domainCaps(c, accel.Virt, spec.Arch, spec.Machine)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	fwl, fw, err := chooseFirmware(d.opts.FirmwareFinder, spec, d.target.local(), d.pool, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	up, err := planUploads(ctx, spec, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if err := checkCaps(caps, spec, up, d.info.LibvirtVersion); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if err := d.checkSpace(c, up.files); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}

	m = &Machine{
		driver: d, spec: spec, name: name, conn: c, accel: accel, firmware: fw,
		log:   d.log.With("machine", spec.Name, "domain", name),
		ended: make(chan struct{}), done: make(chan struct{}), consoleDone: make(chan struct{}),
	}
	paths, err := m.upload(ctx, up, &undo)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if fwl.nvram != "" {
		m.nvram = filepath.Base(fwl.nvram)
		undo = append(undo, func() { _ = m.deleteNVRAM(context.Background(), c) })
	}
	if m.xml, err = domainXML(up.layout(layout{name: name, virt: accel.Virt, spec: spec, fw: fwl}, paths)); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	xmlPath := filepath.Join(spec.WorkDir, "domain.xml")
	_ = os.WriteFile(xmlPath, []byte(m.xml), 0o600) // for a person to replay with virsh create

	if m.console, err = hypervisor.NewConsoleLog(filepath.Join(spec.WorkDir, "console.log"), m.onConsolePanic); err != nil {
		return nil, fmt.Errorf("%s: console log: %w", at, err)
	}
	undo = append(undo, func() {
		if err := m.console.Close(); err != nil {
			m.log.Warn("the console log is incomplete", "path", m.console.Path(), "err", err)
		}
	})

	// Paused, so that nothing the guest does (its first console bytes, an early power-off)
	// happens before ingot listens.
	if m.dom, err = c.DomainCreateXML(m.xml, golibvirt.DomainStartPaused|golibvirt.DomainStartAutodestroy); err != nil {
		return nil, fmt.Errorf("%s: %w (the domain XML is in %s; virsh -c %s create %s replays it)", at, explainCreate(err, name, d.target), xmlPath, d.target, xmlPath)
	}
	undo = append(undo, func() { _ = c.DomainDestroy(m.dom) })
	m.log.Debug("domain created", "accel", accel.Virt, "firmware", spec.Firmware)

	lifecycle, reboots, err := m.attach(ctx, &undo)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if err := c.DomainResume(m.dom); err != nil {
		return nil, fmt.Errorf("%s: resume: %w", at, err)
	}
	go m.watch(lifecycle, reboots)
	m.log.Debug("machine running", "ssh", m.sshAddr)
	return m, nil
}

// uploadPlan is one local file to put in the pool.
type uploadPlan struct {
	local    string
	name     string // volume name
	size     int64  // the file's length
	alloc    int64  // bytes of data in it (what travels: holes are not sent)
	writable bool   // copied back when the machine ends
}

// uploads is what a machine needs on the libvirt host: every disk with its backing chain, the
// kernel and the initrd. A file two disks share (a common base) goes up once.
type uploads struct {
	files   []uploadPlan
	byLocal map[string]int
	disks   [][]int    // per spec disk, indexes into files: the image, then its backing chain
	formats [][]string // the same, their formats
	kernel  int        // index into files, or -1
	initrd  int
	backing bool // some disk has a backing chain
}

func planUploads(ctx context.Context, spec hypervisor.Spec, name string) (*uploads, error) {
	u := &uploads{byLocal: map[string]int{}, kernel: -1, initrd: -1}
	for i, disk := range spec.Disks {
		chain, err := backingChain(ctx, disk.Path, disk.Format)
		if err != nil {
			return nil, fmt.Errorf("disk %d: %w", i, err)
		}
		u.backing = u.backing || len(chain) > 1
		var idx []int
		var formats []string
		for j, img := range chain {
			vol := fmt.Sprintf("%s-d%d.%s", name, i, volumeExt(img.Format))
			if j > 0 {
				vol = fmt.Sprintf("%s-d%d-b%d.%s", name, i, j, volumeExt(img.Format))
			}
			k, err := u.add(img.Filename, vol, j == 0 && !disk.ReadOnly && !disk.CDROM)
			if err != nil {
				return nil, fmt.Errorf("disk %d: %w", i, err)
			}
			idx, formats = append(idx, k), append(formats, img.Format)
		}
		u.disks, u.formats = append(u.disks, idx), append(u.formats, formats)
	}
	var err error
	if spec.Kernel != "" {
		if u.kernel, err = u.add(spec.Kernel, name+"-kernel", false); err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
	}
	if spec.Initrd != "" {
		if u.initrd, err = u.add(spec.Initrd, name+"-initrd", false); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
	}
	return u, nil
}

func (u *uploads) add(local, vol string, writable bool) (int, error) {
	if i, ok := u.byLocal[local]; ok {
		u.files[i].writable = u.files[i].writable || writable
		return i, nil
	}
	size, alloc, err := fileSizes(local)
	if err != nil {
		return 0, err
	}
	u.files = append(u.files, uploadPlan{local: local, name: vol, size: size, alloc: alloc, writable: writable})
	u.byLocal[local] = len(u.files) - 1
	return len(u.files) - 1, nil
}

// layout fills base with the uploaded files' paths on the libvirt host.
func (u *uploads) layout(base layout, paths []string) layout {
	for i, idx := range u.disks {
		f := diskFiles{path: paths[idx[0]]}
		for j, k := range idx[1:] {
			f.backing = append(f.backing, image{path: paths[k], format: u.formats[i][j+1]})
		}
		base.disks = append(base.disks, f)
	}
	if u.kernel >= 0 {
		base.kernel = paths[u.kernel]
	}
	if u.initrd >= 0 {
		base.initrd = paths[u.initrd]
	}
	return base
}

// upload creates and fills a volume for each file and returns their paths on the libvirt host.
// Each volume is registered for deletion (undo, and the machine's teardown) as soon as it exists.
func (m *Machine) upload(ctx context.Context, u *uploads, undo *[]func()) ([]string, error) {
	c, p := m.conn, m.driver.pool
	paths := make([]string, len(u.files))
	began := time.Now()
	var sent int64
	for i, f := range u.files {
		vol, err := createVolume(c, p, f.name, uint64(f.size))
		if err != nil {
			return nil, err
		}
		m.vols = append(m.vols, machineVolume{vol: vol, local: f.local, writable: f.writable})
		*undo = append(*undo, func() { _ = deleteVolume(c, vol) })
		if paths[i], err = c.StorageVolGetPath(vol); err != nil {
			return nil, fmt.Errorf("volume %s: %w", f.name, err)
		}
		st, err := upload(ctx, c, vol, f.local)
		if err != nil {
			return nil, err
		}
		sent += st.bytes
		m.log.Debug("uploaded", "file", f.local, "volume", f.name, "transfer", st.String())
	}
	m.uploaded = transferStats{bytes: sent, elapsed: time.Since(began)}
	if len(u.files) > 0 {
		m.log.Info("uploaded the machine's images to the storage pool", "pool", p.name, "transfer", m.uploaded.String())
	}
	return paths, nil
}

// attach subscribes to the domain's events, opens its console and forwards its SSH port, while it
// is still paused.
func (m *Machine) attach(ctx context.Context, undo *[]func()) (<-chan golibvirt.DomainEventLifecycleMsg, <-chan any, error) {
	c, d := m.conn, m.driver
	evCtx, cancel := context.WithCancel(context.Background())
	m.cancelEvents = cancel
	*undo = append(*undo, cancel)
	lifecycle, err := c.LifecycleEvents(evCtx)
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe to lifecycle events: %w", err)
	}
	*undo = append(*undo, func() { drain(lifecycle) })
	reboots, err := c.SubscribeEvents(evCtx, golibvirt.DomainEventIDReboot, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe to reboot events: %w", err)
	}
	*undo = append(*undo, func() { drain(reboots) })

	// The console gets a connection of its own (stream.go says why), and the guest is resumed
	// only once libvirtd has attached it: nothing the guest prints is lost.
	cc, err := d.connector.rawConnect(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	m.consoleConn = cc
	*undo = append(*undo, func() { cc.conn.Close() })
	opened := make(chan struct{})
	consoleErr := make(chan error, 1)
	go func() {
		defer close(m.consoleDone)
		_, err := cc.console(m.dom, m.console, func() { close(opened) })
		consoleErr <- err
		m.log.Debug("console stream ended", "err", err)
	}()
	select {
	case <-opened:
	case err := <-consoleErr:
		return nil, nil, fmt.Errorf("open the serial console: %w", err)
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("open the serial console: %w", ctx.Err())
	}

	port, err := addForward(c, m.dom, d.opts.ForwardAddress, m.spec.GuestSSHPort)
	if err != nil {
		return nil, nil, err
	}
	remote := net.JoinHostPort(d.opts.ForwardAddress, strconv.Itoa(port))
	switch {
	case d.target.transport == transportSSH:
		if m.tunnel, err = newTunnel(d.sshClient(), remote, m.log); err != nil {
			return nil, nil, err
		}
		*undo = append(*undo, m.tunnel.close)
		m.sshAddr = m.tunnel.addr()
	case isUnspecifiedAddr(d.opts.ForwardAddress):
		m.sshAddr = net.JoinHostPort(d.target.hostOrLoopback(), strconv.Itoa(port))
	default:
		m.sshAddr = remote // the loopback of a local daemon, or an address New checked
	}
	return lifecycle, reboots, nil
}

// checkSpace refuses a build whose images do not fit in the pool, before a byte is sent.
func (d *Driver) checkSpace(c *conn, files []uploadPlan) error {
	var need int64
	for _, f := range files {
		need += f.alloc
	}
	avail, err := d.pool.available(c)
	if err != nil {
		return err
	}
	if uint64(need) > avail {
		return fmt.Errorf("storage pool %s (%s on %s) has %d MiB free; this machine's images need %d MiB: free space there or choose another pool", d.pool.name, d.pool.dir, d.target, avail>>20, need>>20)
	}
	return nil
}

// explainCreate says what to do about a failed virDomainCreateXML.
func explainCreate(err error, name string, t target) error {
	if isCode(err, golibvirt.ErrDomExist) || strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("create domain: a domain named %s already exists (remove it with: virsh -c %s destroy %s): %w", name, t, name, err)
	}
	return fmt.Errorf("create domain: %w", err)
}

// volumeExt names a volume's file after its format, for people looking at the pool.
func volumeExt(format string) string {
	switch format {
	case "raw":
		return "img"
	case "":
		return "bin"
	}
	return format
}

func isLoopbackAddr(a string) bool {
	ip := net.ParseIP(a)
	return a == "localhost" || ip != nil && ip.IsLoopback()
}

func isUnspecifiedAddr(a string) bool {
	ip := net.ParseIP(a)
	return ip != nil && ip.IsUnspecified()
}
