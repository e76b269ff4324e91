package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// DefaultPool is the storage pool ingot creates if it is missing, under DefaultPoolDir.
const (
	DefaultPool    = "ingot"
	DefaultPoolDir = "/var/lib/libvirt/images"
)

// pool is a storage pool whose volumes are files on the libvirt host.
type pool struct {
	ref  golibvirt.StoragePool // a handle valid on any connection to the same daemon
	name string
	dir  string // its target directory on the libvirt host
}

// ensurePool looks the pool up, defining, building and starting it if it is ingot's own default
// and missing, and starting it if it is inactive. A pool someone else named must exist: ingot does
// not guess where another pool should live.
func ensurePool(c *conn, name string, log *slog.Logger) (pool, error) {
	ref, err := c.StoragePoolLookupByName(name)
	if isCode(err, golibvirt.ErrNoStoragePool) && name == DefaultPool {
		ref, err = definePool(c, name, path.Join(DefaultPoolDir, name), log)
	}
	if isCode(err, golibvirt.ErrNoStoragePool) {
		return pool{}, fmt.Errorf("storage pool %q does not exist; create it (virsh pool-define-as %s dir --target /var/lib/libvirt/images/%s && virsh pool-build %s && virsh pool-start %s && virsh pool-autostart %s) or leave the pool unset for ingot's own %q", name, name, name, name, name, name, DefaultPool)
	}
	if err != nil {
		return pool{}, fmt.Errorf("storage pool %s: %w", name, err)
	}
	state, _, _, _, err := c.StoragePoolGetInfo(ref)
	if err != nil {
		return pool{}, fmt.Errorf("storage pool %s: %w", name, err)
	}
	if golibvirt.StoragePoolState(state) != golibvirt.StoragePoolRunning {
		log.Info("starting storage pool", "pool", name)
		if err := c.StoragePoolCreate(ref, 0); err != nil && !isCode(err, golibvirt.ErrOperationInvalid) {
			return pool{}, fmt.Errorf("start storage pool %s: %w", name, err)
		}
	}
	desc, err := c.StoragePoolGetXMLDesc(ref, 0)
	if err != nil {
		return pool{}, fmt.Errorf("storage pool %s: %w", name, err)
	}
	var x libvirtxml.StoragePool
	if err := x.Unmarshal(desc); err != nil {
		return pool{}, fmt.Errorf("storage pool %s: %w", name, err)
	}
	switch x.Type {
	case "dir", "fs", "netfs":
	default:
		return pool{}, fmt.Errorf("storage pool %s is of type %s; ingot needs a pool whose volumes are files (dir, fs or netfs)", name, x.Type)
	}
	if x.Target == nil || x.Target.Path == "" {
		return pool{}, fmt.Errorf("storage pool %s has no target directory", name)
	}
	return pool{ref: ref, name: name, dir: x.Target.Path}, nil
}

func definePool(c *conn, name, dir string, log *slog.Logger) (golibvirt.StoragePool, error) {
	x := libvirtxml.StoragePool{
		Type: "dir",
		Name: name,
		// 0711: the qemu user (libvirt-qemu) must reach the images, which libvirt labels for
		// it at start; nobody needs to list them.
		Target: &libvirtxml.StoragePoolTarget{Path: dir, Permissions: &libvirtxml.StoragePoolTargetPermissions{Mode: "0711"}},
	}
	doc, err := x.Marshal()
	if err != nil {
		return golibvirt.StoragePool{}, err
	}
	log.Info("creating storage pool", "pool", name, "dir", dir)
	ref, err := c.StoragePoolDefineXML(doc, 0)
	if err != nil {
		// Another ingot defined it first.
		if r, lerr := c.StoragePoolLookupByName(name); lerr == nil {
			return r, nil
		}
		return golibvirt.StoragePool{}, fmt.Errorf("define storage pool %s at %s: %w", name, dir, err)
	}
	if err := c.StoragePoolBuild(ref, 0); err != nil {
		return golibvirt.StoragePool{}, fmt.Errorf("build storage pool %s at %s: %w", name, dir, err)
	}
	if err := c.StoragePoolCreate(ref, 0); err != nil {
		return golibvirt.StoragePool{}, fmt.Errorf("start storage pool %s: %w", name, err)
	}
	if err := c.StoragePoolSetAutostart(ref, 1); err != nil {
		log.Warn("storage pool will not start with libvirtd", "pool", name, "err", err)
	}
	return ref, nil
}

// refresh rescans the pool directory. libvirt refuses while an upload or download runs in the
// pool ("has asynchronous jobs running"), which other builds may be doing: retry a few times.
func (p pool) refresh(ctx context.Context, c *conn) error {
	var err error
	for attempt := 1; attempt <= 10; attempt++ {
		if err = c.StoragePoolRefresh(p.ref, 0); err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "asynchronous jobs") {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		}
	}
	return fmt.Errorf("refresh storage pool %s: %w", p.name, err)
}

// available is the space left in the pool, after a refresh when one is possible at once (libvirt
// only measures it then; while another build transfers, the last measure has to do).
func (p pool) available(c *conn) (uint64, error) {
	_ = c.StoragePoolRefresh(p.ref, 0)
	_, _, _, avail, err := c.StoragePoolGetInfo(p.ref)
	if err != nil {
		return 0, fmt.Errorf("storage pool %s: %w", p.name, err)
	}
	return avail, nil
}

// createVolume makes an empty raw volume of size bytes (a sparse file), to be filled by upload.
// Raw whatever the image format: the volume is only a container for the file's bytes, and a
// volume libvirt created as qcow2 would carry a header of its own that the upload must overwrite
// exactly. The domain XML says what format the file is.
func createVolume(c *conn, p pool, name string, size uint64) (golibvirt.StorageVol, error) {
	x := libvirtxml.StorageVolume{
		Name:       name,
		Capacity:   &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: size},
		Allocation: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 0},
		Target: &libvirtxml.StorageVolumeTarget{
			Format:      &libvirtxml.StorageVolumeTargetFormat{Type: "raw"},
			Permissions: &libvirtxml.StorageVolumeTargetPermissions{Mode: "0600"},
		},
	}
	doc, err := x.Marshal()
	if err != nil {
		return golibvirt.StorageVol{}, err
	}
	vol, err := c.StorageVolCreateXML(p.ref, doc, 0)
	if err != nil {
		if isCode(err, golibvirt.ErrStorageVolExist) {
			return vol, fmt.Errorf("create volume %s in pool %s: it already exists (another build with the same name? remove it with: virsh vol-delete --pool %s %s)", name, p.name, p.name, name)
		}
		return vol, fmt.Errorf("create volume %s in pool %s: %w", name, p.name, err)
	}
	return vol, nil
}

// deleteVolume removes a volume; one already gone is not an error.
func deleteVolume(c *conn, vol golibvirt.StorageVol) error {
	if err := c.StorageVolDelete(vol, 0); err != nil && !isCode(err, golibvirt.ErrNoStorageVol) {
		return fmt.Errorf("delete volume %s from pool %s: %w", vol.Name, vol.Pool, err)
	}
	return nil
}

// volumeName matches the volumes ingot makes: the domain name (ingot-NAME-XXXXXXXX) and what the
// volume holds. The domain's name is in group 1.
var volumeName = regexp.MustCompile(`^(ingot-.*-[0-9a-f]{8})-(d[0-9]+(-b[0-9]+)?\.[a-z0-9]+|kernel|initrd|VARS\.fd)$`)

// sweep deletes volumes a build left behind when ingot itself was killed (SIGKILL leaves no chance
// to clean up; libvirtd destroys the domain, which was tied to ingot's connection, but not its
// volumes). A volume is stale when its domain no longer runs and it is older than staleAfter:
// the age keeps a concurrent ingot's volumes safe between their upload and their domain's start.
func sweep(ctx context.Context, c *conn, p pool, staleAfter time.Duration, log *slog.Logger) {
	// A UEFI variable store is a file libvirt made: a volume only after a refresh. One try: a
	// refresh refused while another build transfers is not worth waiting for here.
	_ = c.StoragePoolRefresh(p.ref, 0)
	vols, _, err := c.StoragePoolListAllVolumes(p.ref, 1, 0)
	if err != nil {
		log.Debug("sweep: list volumes", "pool", p.name, "err", err)
		return
	}
	for _, v := range vols {
		m := volumeName.FindStringSubmatch(v.Name)
		if m == nil || ctx.Err() != nil {
			continue
		}
		if _, err := c.DomainLookupByName(m[1]); err == nil || !isCode(err, golibvirt.ErrNoDomain) {
			continue // its build still runs (or libvirt cannot say)
		}
		desc, err := c.StorageVolGetXMLDesc(v, 0)
		if err != nil {
			continue
		}
		var x libvirtxml.StorageVolume
		if x.Unmarshal(desc) != nil || x.Target == nil || x.Target.Timestamps == nil {
			continue
		}
		if age := time.Since(parseTimestamp(x.Target.Timestamps.Mtime)); age < staleAfter {
			continue
		}
		if err := deleteVolume(c, v); err != nil {
			log.Warn("sweep: could not delete a stale volume", "volume", v.Name, "err", err)
			continue
		}
		log.Info("deleted a volume a killed build left behind", "pool", p.name, "volume", v.Name)
	}
}

// parseTimestamp reads libvirt's "seconds.nanoseconds".
func parseTimestamp(s string) time.Time {
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Now()
	}
	ns, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
	return time.Unix(n, ns)
}

// isCode reports whether err is a libvirt error with code.
func isCode(err error, code golibvirt.ErrorNumber) bool {
	var lerr golibvirt.Error
	return errors.As(err, &lerr) && golibvirt.ErrorNumber(lerr.Code) == code
}
