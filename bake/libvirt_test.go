package bake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/libvirt"
	"github.com/ingot-build/ingot/hypervisor/qemu"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/execx"
	"github.com/ingot-build/ingot/internal/testguest"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
	"github.com/ingot-build/ingot/source"
)

// The built-in demo recipe, built at the same time by the QEMU driver and by the libvirt driver
// on the second libvirtd that stands in for a remote KVM host (qemu+tcp, its own storage pool,
// files reaching it only through libvirt's volume API). The two builds must publish the same
// outputs: the same files in the same formats, the same disk layout, the same packages, and the
// provisioner's file inside the image, which for the libvirt build proves that the guest's writes
// came back from the remote pool.
func TestDemoRecipeThroughRemoteLibvirt(t *testing.T) {
	t.Parallel()
	testguest.Libvirt(t)
	img := testguest.CloudImage(t)
	uri := testguest.RemoteLibvirtURI()
	vars := map[string]string{"image_url": "file://" + img.Image, "image_sha256": img.SHA256}
	r, err := recipes.Resolve("demo", vars, nil)
	if err != nil {
		t.Fatalf("resolve the demo recipe: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	type side struct {
		name string
		dir  string
		res  *bake.Result
		logs *syncBuffer
	}
	sides := []*side{{name: "qemu"}, {name: "libvirt"}}
	var g errgroup.Group
	for _, s := range sides {
		s.dir = t.TempDir()
		s.logs = &syncBuffer{}
		log := slog.New(slog.NewTextHandler(io.MultiWriter(tWriter{t}, s.logs), nil)).With("driver", s.name)
		var driver hypervisor.Driver
		tool := manifest.Tool{IngotVersion: "test", Driver: s.name}
		switch s.name {
		case "qemu":
			driver = qemu.New(qemu.WithLogger(log))
		case "libvirt":
			d, err := libvirt.New(ctx, libvirt.Options{URI: uri, Logger: log})
			if err != nil {
				t.Fatalf("connect to %s: %v", uri, err)
			}
			t.Cleanup(func() { d.Close() })
			driver = d
			info := d.Info()
			tool.Libvirt = &manifest.Libvirt{URI: info.URI, Host: info.Hostname, Version: info.LibvirtVersion, Pool: info.Pool}
		}
		fetcher, err := source.New(filepath.Join(s.dir, "cache"), source.WithLogger(log))
		if err != nil {
			t.Fatal(err)
		}
		store, err := images.Open(filepath.Join(s.dir, "images"))
		if err != nil {
			t.Fatal(err)
		}
		g.Go(func() error {
			res, err := bake.Build(ctx, bake.Options{
				Recipe: r, OutDir: filepath.Join(s.dir, "out"), WorkRoot: filepath.Join(s.dir, "work"),
				Logger: log, Driver: driver, Sources: fetcher, Images: store, Tool: tool,
			})
			if err != nil {
				return fmt.Errorf("%s build: %w", s.name, err)
			}
			s.res = res
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	q, l := sides[0].res.Manifest, sides[1].res.Manifest
	if l.Tool.Driver != "libvirt" || l.Tool.Libvirt == nil || l.Tool.Libvirt.URI != uri {
		t.Errorf("the libvirt build's manifest says tool %+v, want driver libvirt at %s", l.Tool, uri)
	}
	if got, want := outputFormats(l), outputFormats(q); !reflect.DeepEqual(got, want) {
		t.Errorf("outputs differ: libvirt %v, qemu %v", got, want)
	}
	// Every output was test-booted, through the driver that built it: the first (the minimal raw
	// image) fully, with every check passing, the others to the kernel (issue 14).
	for _, side := range sides {
		checkDemoTests(t, side.name, side.res.Manifest)
	}
	if !reflect.DeepEqual(l.Packages, q.Packages) {
		t.Errorf("package inventories differ: libvirt has %d packages, qemu %d", len(l.Packages), len(q.Packages))
	}
	if q.Firmware != l.Firmware {
		t.Errorf("firmware: libvirt %s, qemu %s", l.Firmware, q.Firmware)
	}
	var demoLine string
	for i, o := range q.Outputs {
		if o.Format != "qcow2" && o.Format != "vmdk" && o.Format != "vhdx" {
			continue // shrunk, compressed or packed: their sizes follow the images' data
		}
		qPath := filepath.Join(sides[0].res.Dir, o.File)
		lPath := filepath.Join(sides[1].res.Dir, l.Outputs[i].File)
		qi, li := inspect(t, qPath), inspect(t, lPath)
		if qi.Format != li.Format || qi.VirtualSize != li.VirtualSize {
			t.Errorf("%s: libvirt's is %s of %d bytes, qemu's %s of %d", o.File, li.Format, li.VirtualSize, qi.Format, qi.VirtualSize)
		}
		if !reflect.DeepEqual(layout(qi), layout(li)) {
			t.Errorf("%s: disk layouts differ:\nlibvirt %s\nqemu    %s", o.File, layout(li), layout(qi))
		}
		if o.Format != "qcow2" {
			continue
		}
		// The provisioner wrote /etc/ingot-demo; its line names the OS and the kernel, the same
		// on both sides.
		qLine, lLine := guestFile(t, qPath, "/etc/ingot-demo"), guestFile(t, lPath, "/etc/ingot-demo")
		if !strings.HasPrefix(qLine, "ingot demo: Debian GNU/Linux 12") || lLine != qLine {
			t.Errorf("/etc/ingot-demo: libvirt %q, qemu %q", lLine, qLine)
		}
		demoLine = qLine
	}
	if demoLine == "" {
		t.Error("the demo recipe has no qcow2 output to look into")
	}
	// Nothing of the build is left on the "remote" host.
	out, err := execx.Output(ctx, "virsh", "-q", "-c", uri, "vol-list", l.Tool.Libvirt.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "ingot-demo-") {
		t.Errorf("volumes of the build are left in the remote pool:\n%s", out)
	}
	if out, err := execx.Output(ctx, "virsh", "-q", "-c", uri, "list", "--all", "--name"); err != nil || strings.Contains(string(out), "ingot-demo-") {
		t.Errorf("a domain of the build is left on the remote daemon (%v):\n%s", err, out)
	}
	data, _ := json.MarshalIndent(l.Steps, "", "  ")
	t.Logf("libvirt build steps: %s", data)
}

func outputFormats(m *manifest.Manifest) []string {
	var s []string
	for _, o := range m.Outputs {
		s = append(s, o.File+" "+o.Format)
	}
	return s
}

func inspect(t *testing.T, path string) disk.Inspection {
	t.Helper()
	in, err := disk.Inspect(context.Background(), path)
	if err != nil {
		t.Fatalf("inspect %s: %v", path, err)
	}
	return in
}

// layout is the partition table without what a build may change: partition sizes and
// filesystem UUIDs are the source image's, free space is not compared.
func layout(in disk.Inspection) string {
	if in.Table == nil {
		return "no partition table"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s:", in.Table.Type, in.Table.ID)
	for _, p := range in.Table.Partitions {
		fmt.Fprintf(&b, " [%d %d+%d %s %s", p.Index, p.Start, p.Size, p.TypeName, p.UUID)
		if p.Filesystem != nil {
			fmt.Fprintf(&b, " %s %s %s", p.Filesystem.Type, p.Filesystem.Label, p.Filesystem.UUID)
		}
		b.WriteString("]")
	}
	return b.String()
}

// guestFile reads a file from the ext4 root of an image, offline: the image as raw, the root
// partition cut out, debugfs.
func guestFile(t *testing.T, image, path string) string {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	ctx := context.Background()
	if err := execx.Run(ctx, "qemu-img", "convert", "-O", "raw", image, raw); err != nil {
		t.Fatal(err)
	}
	in := inspect(t, raw)
	if in.Table == nil {
		t.Fatalf("%s: no partition table", image)
	}
	for _, p := range in.Table.Partitions {
		if p.Filesystem == nil || p.Filesystem.Type != "ext4" {
			continue
		}
		root := filepath.Join(dir, "root.ext4")
		if err := execx.Run(ctx, "dd", "if="+raw, "of="+root, "bs=1M", "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none",
			fmt.Sprintf("skip=%d", p.Start), fmt.Sprintf("count=%d", p.Size)); err != nil {
			t.Fatal(err)
		}
		os.Remove(raw)
		out, err := execx.Output(ctx, "debugfs", "-R", "cat "+path, root)
		if err != nil {
			t.Fatalf("read %s from %s: %v", path, image, err)
		}
		return strings.TrimSpace(string(out))
	}
	t.Fatalf("%s: no ext4 partition in %s", image, layout(in))
	return ""
}

// checkDemoTests checks the demo build's test boots as its manifest records them: a full boot of
// the minimal raw image with every check passing (grown and the recipe's provisioned among them),
// and a smoke boot of each other output but the bmap.
func checkDemoTests(t *testing.T, side string, m *manifest.Manifest) {
	t.Helper()
	for i, o := range m.Outputs {
		if o.Format == "bmap" {
			if len(o.Tests) != 0 {
				t.Errorf("%s: the bmap %s was test-booted: %+v", side, o.File, o.Tests)
			}
			continue
		}
		if len(o.Tests) != 1 || !o.Tests[0].Passed || o.Tests[0].Firmware != "uefi" {
			t.Errorf("%s: %s tests = %+v, want one passed boot under uefi", side, o.File, o.Tests)
			continue
		}
		var checks []string
		for _, c := range o.Tests[0].Checks {
			checks = append(checks, c.Name+"="+c.Result)
		}
		want := []string{"boots=pass"}
		boot := "smoke"
		if i == 0 {
			want = []string{"boots=pass", "cloud-init=pass", "fresh-identity=pass", "no-build-user=pass", "grown=pass", "provisioned=pass"}
			boot = "full"
		}
		if o.Tests[0].Boot != boot || !slices.Equal(checks, want) {
			t.Errorf("%s: %s: a %s boot with %v, want a %s boot with %v", side, o.File, o.Tests[0].Boot, checks, boot, want)
		}
	}
	if len(m.Outputs) != 7 || m.Outputs[0].File != "demo-minimal.raw" {
		t.Errorf("%s: outputs %v, want the demo's 7 files, demo-minimal.raw first", side, outputFormats(m))
	}
	if bm := m.BuildMachine; bm == nil || len(bm.MachineID) != 32 || len(bm.HostKeys) == 0 || bm.User != "ingot" || !bm.Generalized {
		t.Errorf("%s: build_machine = %+v", side, bm)
	}
}
