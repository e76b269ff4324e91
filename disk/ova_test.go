package disk

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/qemuimg"
)

// checkOVA reads an OVA back with archive/tar, the way an importer does, and checks its
// structure against its own descriptor and manifest, and its disk against the test disk.
func checkOVA(t *testing.T, d *testDisk, a Artifact, spec OutputSpec) {
	t.Helper()
	f, err := os.Open(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tmp := t.TempDir()
	type member struct {
		name   string
		size   int64
		sha256 string
		data   []byte
	}
	var members []member
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Format != tar.FormatUSTAR || hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: format %v, type %c; want a ustar regular file", hdr.Name, hdr.Format, hdr.Typeflag)
		}
		out, err := os.Create(filepath.Join(tmp, hdr.Name))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(out, h), tr)
		out.Close()
		if err != nil {
			t.Fatal(err)
		}
		m := member{name: hdr.Name, size: n, sha256: hex.EncodeToString(h.Sum(nil))}
		if !strings.HasSuffix(hdr.Name, ".vmdk") {
			m.data, _ = os.ReadFile(filepath.Join(tmp, hdr.Name))
		}
		members = append(members, m)
	}
	var names []string
	for _, m := range members {
		names = append(names, m.name)
	}
	want := []string{spec.Name + ".ovf", spec.Name + ".mf", spec.Name + "-disk1.vmdk"}
	if !slices.Equal(names, want) {
		t.Fatalf("members %v, want %v (descriptor, manifest, disk)", names, want)
	}

	var desc ovfRead
	if err := xml.Unmarshal(members[0].data, &desc); err != nil {
		t.Fatalf("parse the descriptor: %v\n%s", err, members[0].data)
	}
	if len(desc.Files) != 1 || desc.Files[0].Href != members[2].name || desc.Files[0].Size != members[2].size {
		t.Errorf("References %+v; the disk member is %s, %d bytes", desc.Files, members[2].name, members[2].size)
	}
	vmdk := filepath.Join(tmp, members[2].name)
	info, err := qemuimg.Info(context.Background(), vmdk, "vmdk")
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Disks) != 1 || desc.Disks[0].Capacity != info.VirtualSize || desc.Disks[0].Format != vmdkStreamFormat || desc.Disks[0].FileRef != desc.Files[0].ID {
		t.Errorf("DiskSection %+v; the vmdk is %d bytes virtual", desc.Disks, info.VirtualSize)
	}
	if fs := info.FormatSpecific; fs == nil || fs.Data.CreateType != "streamOptimized" {
		t.Errorf("the disk is not a streamOptimized vmdk")
	}
	mustRun(t, "qemu-img", "compare", "-q", "-f", "vmdk", "-F", "raw", vmdk, d.Raw)

	sums, err := parseManifest(members[1].data)
	if err != nil {
		t.Fatalf("manifest: %v\n%s", err, members[1].data)
	}
	if len(sums) != 2 || sums[members[0].name] != members[0].sha256 || sums[members[2].name] != members[2].sha256 {
		t.Errorf("manifest %v; members %+v", sums, members)
	}
	if !strings.HasPrefix(string(members[1].data), "SHA256("+spec.Name+".ovf)= ") {
		t.Errorf("manifest line format: %q", members[1].data)
	}

	quantity := map[int]string{}
	for _, it := range desc.Items {
		quantity[it.ResourceType] = it.VirtualQuantity
	}
	if quantity[rtProcessor] != strconv.Itoa(spec.CPUs) || quantity[rtMemory] != strconv.FormatInt(spec.MemoryMiB, 10) {
		t.Errorf("CPUs/memory %q/%q, want %d/%d", quantity[rtProcessor], quantity[rtMemory], spec.CPUs, spec.MemoryMiB)
	}
	efi := slices.ContainsFunc(desc.Configs, func(c struct {
		Key   string `xml:"http://www.vmware.com/schema/ovf key,attr"`
		Value string `xml:"http://www.vmware.com/schema/ovf value,attr"`
	}) bool {
		return c.Key == "firmware" && c.Value == "efi"
	})
	if efi != (spec.Firmware == "uefi") {
		t.Errorf("firmware efi config = %v for firmware %q", efi, spec.Firmware)
	}
	if err := verifyOVA(a.Path); err != nil {
		t.Error(err)
	}
}

// TestOVFDescriptor checks the descriptor's hardware for each bus and firmware, and that it is
// well-formed XML whose namespaced names decode.
func TestOVFDescriptor(t *testing.T) {
	tests := []struct {
		bus, firmware string
		ctrlType      int
		ctrlSub       string
	}{
		{"scsi", "bios", rtSCSI, "lsilogic"},
		{"sata", "uefi", rtOtherStorage, "vmware.sata.ahci"},
	}
	for _, tt := range tests {
		data, err := ovfDescriptor(ovaParams{Name: "vm", DiskFile: "vm-disk1.vmdk", DiskSize: 1234, Capacity: 8 << 30,
			Populated: 1 << 30, CPUs: 4, MemoryMiB: 4096, Firmware: tt.firmware, DiskBus: tt.bus})
		if err != nil {
			t.Fatal(err)
		}
		var desc ovfRead
		if err := xml.Unmarshal(data, &desc); err != nil {
			t.Fatalf("%v\n%s", err, data)
		}
		var kinds []int
		for _, it := range desc.Items {
			kinds = append(kinds, it.ResourceType)
			if it.ResourceType == tt.ctrlType && it.ResourceSubType != tt.ctrlSub {
				t.Errorf("%s: controller subtype %q, want %q", tt.bus, it.ResourceSubType, tt.ctrlSub)
			}
			if it.ResourceType == rtDisk && it.HostResource != "ovf:/disk/vmdisk1" {
				t.Errorf("disk host resource %q", it.HostResource)
			}
		}
		if !slices.Equal(kinds, []int{rtProcessor, rtMemory, tt.ctrlType, rtDisk, rtEthernet}) {
			t.Errorf("%s: items %v", tt.bus, kinds)
		}
		if got := (len(desc.Configs) == 1); got != (tt.firmware == "uefi") {
			t.Errorf("%s: configs %+v", tt.firmware, desc.Configs)
		}
		s := string(data)
		for _, want := range []string{`<?xml version="1.0" encoding="UTF-8"?>`, `xmlns:ovf="` + ovfNS + `"`,
			`ovf:capacity="8589934592"`, `<rasd:ResourceType>17</rasd:ResourceType>`, `<vssd:VirtualSystemType>vmx-10</vssd:VirtualSystemType>`} {
			if !strings.Contains(s, want) {
				t.Errorf("descriptor lacks %s:\n%s", want, s)
			}
		}
	}
}
