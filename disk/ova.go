package disk

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ingot-build/ingot/internal/qemuimg"
)

// An OVA is a tar (ustar) of an OVF package: the descriptor (NAME.ovf, XML), the manifest
// (NAME.mf, a checksum of every other file) and the disk (NAME-disk1.vmdk, streamOptimized),
// in that order, which DSP0243 requires so that an importer can read the descriptor and check
// each file as it streams past, without seeking.
//
// The descriptor is OVF 1.0 with VMware's extensions, the dialect ESXi, vSphere, Workstation and
// VirtualBox all import: a CIM virtual hardware section (CPUs, memory, one disk controller, the
// disk, one NIC on "VM Network") and, for UEFI, VMware's firmware=efi setting.
//
// The manifest uses SHA256. OVF 1.0 itself names only SHA1, but every importer in use reads
// SHA256 manifests: ovftool has written them by default since 4.2 (2016), the vSphere Web and
// HTML5 clients and the ESXi host client accept them, and VirtualBox has read them since 5.0
// (it writes them itself). Only the vSphere C# client, retired with vSphere 6.5, insisted on
// SHA1, and SHA1 is not what a release should be verified with today.

const (
	ovfNS  = "http://schemas.dmtf.org/ovf/envelope/1"
	rasdNS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
	vssdNS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
	vmwNS  = "http://www.vmware.com/schema/ovf"
	// vmdkStreamFormat is the ovf:format of a streamOptimized vmdk.
	vmdkStreamFormat = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
)

// The descriptor as encoding/xml structs. encoding/xml cannot choose namespace prefixes, so
// elements and attributes carry theirs in their names and the Envelope declares them; CIM
// schemas want the rasd and vssd elements of an item in alphabetical order, which is the order
// of the fields below.

type ovfEnvelope struct {
	XMLName    xml.Name      `xml:"Envelope"`
	XMLNS      string        `xml:"xmlns,attr"`
	XMLNSOvf   string        `xml:"xmlns:ovf,attr"`
	XMLNSRasd  string        `xml:"xmlns:rasd,attr"`
	XMLNSVssd  string        `xml:"xmlns:vssd,attr"`
	XMLNSVmw   string        `xml:"xmlns:vmw,attr"`
	Version    string        `xml:"ovf:version,attr"`
	References []ovfFile     `xml:"References>File"`
	Disks      ovfDiskSec    `xml:"DiskSection"`
	Networks   ovfNetworkSec `xml:"NetworkSection"`
	System     ovfSystem     `xml:"VirtualSystem"`
}

type ovfFile struct {
	Href string `xml:"ovf:href,attr"`
	ID   string `xml:"ovf:id,attr"`
	Size int64  `xml:"ovf:size,attr"`
}

type ovfDiskSec struct {
	Info  string    `xml:"Info"`
	Disks []ovfDisk `xml:"Disk"`
}

type ovfDisk struct {
	// Capacity is in bytes: no ovf:capacityAllocationUnits, whose default is bytes, because
	// a disk's size need not be a whole number of GiB.
	Capacity      int64  `xml:"ovf:capacity,attr"`
	DiskID        string `xml:"ovf:diskId,attr"`
	FileRef       string `xml:"ovf:fileRef,attr"`
	Format        string `xml:"ovf:format,attr"`
	PopulatedSize int64  `xml:"ovf:populatedSize,attr,omitempty"`
}

type ovfNetworkSec struct {
	Info     string       `xml:"Info"`
	Networks []ovfNetwork `xml:"Network"`
}

type ovfNetwork struct {
	Name        string `xml:"ovf:name,attr"`
	Description string `xml:"Description"`
}

type ovfSystem struct {
	ID       string      `xml:"ovf:id,attr"`
	Info     string      `xml:"Info"`
	Name     string      `xml:"Name"`
	OS       ovfOS       `xml:"OperatingSystemSection"`
	Hardware ovfHardware `xml:"VirtualHardwareSection"`
}

type ovfOS struct {
	ID     int    `xml:"ovf:id,attr"`
	OSType string `xml:"vmw:osType,attr"`
	Info   string `xml:"Info"`
}

type ovfHardware struct {
	Info    string      `xml:"Info"`
	System  ovfVSSD     `xml:"System"`
	Items   []ovfItem   `xml:"Item"`
	Configs []vmwConfig `xml:"vmw:Config"`
}

type ovfVSSD struct {
	ElementName string `xml:"vssd:ElementName"`
	InstanceID  int    `xml:"vssd:InstanceID"`
	Identifier  string `xml:"vssd:VirtualSystemIdentifier"`
	Type        string `xml:"vssd:VirtualSystemType"`
}

type ovfItem struct {
	Address             string `xml:"rasd:Address,omitempty"`
	AddressOnParent     string `xml:"rasd:AddressOnParent,omitempty"`
	AllocationUnits     string `xml:"rasd:AllocationUnits,omitempty"`
	AutomaticAllocation string `xml:"rasd:AutomaticAllocation,omitempty"`
	Connection          string `xml:"rasd:Connection,omitempty"`
	Description         string `xml:"rasd:Description,omitempty"`
	ElementName         string `xml:"rasd:ElementName"`
	HostResource        string `xml:"rasd:HostResource,omitempty"`
	InstanceID          int    `xml:"rasd:InstanceID"`
	Parent              string `xml:"rasd:Parent,omitempty"`
	ResourceSubType     string `xml:"rasd:ResourceSubType,omitempty"`
	ResourceType        int    `xml:"rasd:ResourceType"`
	VirtualQuantity     string `xml:"rasd:VirtualQuantity,omitempty"`
}

type vmwConfig struct {
	Required string `xml:"ovf:required,attr"`
	Key      string `xml:"vmw:key,attr"`
	Value    string `xml:"vmw:value,attr"`
}

// CIM resource types (DSP1041 / CIM_ResourceAllocationSettingData.ResourceType).
const (
	rtProcessor     = 3
	rtMemory        = 4
	rtSCSI          = 6
	rtEthernet      = 10
	rtDisk          = 17
	rtOtherStorage  = 20 // SATA
	vmxHWVersion    = "vmx-10"
	cimOSLinux26x64 = 101 // CIM_OperatingSystem "Linux 2.6.x 64-Bit": VirtualBox maps it to Linux26_64
)

// ovaParams is what the descriptor says.
type ovaParams struct {
	Name      string
	DiskFile  string
	DiskSize  int64 // bytes of the vmdk file
	Capacity  int64 // virtual size of the disk
	Populated int64 // bytes of data in it
	CPUs      int
	MemoryMiB int64
	Firmware  string // bios or uefi
	DiskBus   string // scsi or sata
}

// ovfDescriptor renders the OVF descriptor.
func ovfDescriptor(p ovaParams) ([]byte, error) {
	controller := ovfItem{ElementName: "SCSI Controller 0", Description: "SCSI Controller", Address: "0",
		InstanceID: 3, ResourceSubType: "lsilogic", ResourceType: rtSCSI}
	if p.DiskBus == "sata" {
		controller = ovfItem{ElementName: "SATA Controller 0", Description: "SATA Controller", Address: "0",
			InstanceID: 3, ResourceSubType: "vmware.sata.ahci", ResourceType: rtOtherStorage}
	}
	env := ovfEnvelope{
		XMLNS: ovfNS, XMLNSOvf: ovfNS, XMLNSRasd: rasdNS, XMLNSVssd: vssdNS, XMLNSVmw: vmwNS,
		Version:    "1.0",
		References: []ovfFile{{Href: p.DiskFile, ID: "file1", Size: p.DiskSize}},
		Disks: ovfDiskSec{Info: "Virtual disk information", Disks: []ovfDisk{{
			Capacity: p.Capacity, DiskID: "vmdisk1", FileRef: "file1", Format: vmdkStreamFormat, PopulatedSize: p.Populated,
		}}},
		Networks: ovfNetworkSec{Info: "The list of logical networks", Networks: []ovfNetwork{{
			Name: "VM Network", Description: "The VM Network network",
		}}},
		System: ovfSystem{
			ID: p.Name, Info: "A virtual machine built by ingot", Name: p.Name,
			OS: ovfOS{ID: cimOSLinux26x64, OSType: "otherLinux64Guest", Info: "The kind of installed guest operating system"},
			Hardware: ovfHardware{
				Info: "Virtual hardware requirements",
				System: ovfVSSD{ElementName: "Virtual Hardware Family", InstanceID: 0,
					Identifier: p.Name, Type: vmxHWVersion},
				Items: []ovfItem{
					{AllocationUnits: "hertz * 10^6", Description: "Number of Virtual CPUs",
						ElementName: fmt.Sprintf("%d virtual CPU(s)", p.CPUs), InstanceID: 1,
						ResourceType: rtProcessor, VirtualQuantity: strconv.Itoa(p.CPUs)},
					{AllocationUnits: "byte * 2^20", Description: "Memory Size",
						ElementName: fmt.Sprintf("%dMB of memory", p.MemoryMiB), InstanceID: 2,
						ResourceType: rtMemory, VirtualQuantity: strconv.FormatInt(p.MemoryMiB, 10)},
					controller,
					{AddressOnParent: "0", ElementName: "Hard Disk 1", HostResource: "ovf:/disk/vmdisk1",
						InstanceID: 4, Parent: "3", ResourceType: rtDisk},
					// E1000: every importer and every guest kernel has it; vmxnet3 would need
					// the guest's vmxnet3 driver and VirtualBox has no such card.
					{AddressOnParent: "7", AutomaticAllocation: "true", Connection: "VM Network",
						Description: "E1000 ethernet adapter on \"VM Network\"", ElementName: "Network adapter 1",
						InstanceID: 5, ResourceSubType: "E1000", ResourceType: rtEthernet},
				},
			},
		},
	}
	if p.Firmware == "uefi" {
		env.System.Hardware.Configs = append(env.System.Hardware.Configs,
			vmwConfig{Required: "false", Key: "firmware", Value: "efi"})
	}
	out, err := xml.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render the OVF descriptor: %w", err)
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}

// ovfManifest renders NAME.mf: one "SHA256(file)= hex" line per file, the form ovftool writes
// and ESXi insists on (no space before the "=").
func ovfManifest(sums [][2]string) []byte {
	var b strings.Builder
	for _, s := range sums {
		fmt.Fprintf(&b, "SHA256(%s)= %s\n", s[0], s[1])
	}
	return []byte(b.String())
}

// ova makes NAME.ova: the streamOptimized vmdk by qemu-img, checked; its sha256 for the
// manifest; then the tar, written through a hash, with the vmdk hashed again as it is copied in
// so a disk that changed in between fails the build rather than the import.
func (p *producer) ova(ctx context.Context) ([]staged, error) {
	s := p.spec
	diskName := s.Name + "-disk1.vmdk"
	vmdk := filepath.Join(p.work, diskName)
	adapter := "lsilogic"
	if s.DiskBus == "sata" {
		adapter = "ide" // what VMware writes in the vmdk of a SATA disk
	}
	if err := qemuimg.Convert(ctx, p.src, vmdk, qemuimg.ConvertOptions{InputFormat: p.srcFormat, Format: "vmdk", Options: vmdkOptions("streamOptimized", adapter), Progress: p.meter.next()}); err != nil {
		return nil, err
	}
	diskSum, diskSize, err := p.checkAndHash(ctx, vmdk, "vmdk")
	if err != nil {
		return nil, err
	}
	info, err := qemuimg.Info(ctx, vmdk, "vmdk")
	if err != nil {
		return nil, err
	}
	populated, err := qemuimg.Allocated(ctx, p.src, p.srcFormat)
	if err != nil {
		return nil, err
	}
	ovfName, mfName := s.Name+".ovf", s.Name+".mf"
	desc, err := ovfDescriptor(ovaParams{
		Name: s.Name, DiskFile: diskName, DiskSize: diskSize, Capacity: info.VirtualSize, Populated: populated,
		CPUs: s.CPUs, MemoryMiB: s.MemoryMiB, Firmware: s.Firmware, DiskBus: s.DiskBus,
	})
	if err != nil {
		return nil, err
	}
	descSum := sha256.Sum256(desc)
	mf := ovfManifest([][2]string{{ovfName, hex.EncodeToString(descSum[:])}, {diskName, diskSum}})

	name := s.Name + ".ova"
	out := filepath.Join(p.work, name)
	mtime := time.Now()
	if st, err := os.Stat(p.src); err == nil {
		mtime = st.ModTime() // the same source gives the same OVA, byte for byte
	}
	report := p.meter.nextBytes()
	sum, size, err := writeOVA(ctx, out, mtime, []ovaMember{
		{name: ovfName, data: desc},
		{name: mfName, data: mf},
		{name: diskName, path: vmdk, size: diskSize, sha256: diskSum},
	}, func(done int64) { report(done, diskSize) })
	if err != nil {
		return nil, err
	}
	if err := os.Remove(vmdk); err != nil {
		return nil, err
	}
	if err := verifyOVA(out); err != nil {
		return nil, fmt.Errorf("verify %s: %w", out, err)
	}
	return []staged{{tmp: out, art: Artifact{Path: name, Format: "ova", Size: size, SHA256: sum}}}, nil
}

// ovaMember is a file of the OVA: in memory (data) or on disk (path, with the size and sha256 it
// had when the manifest was written).
type ovaMember struct {
	name   string
	data   []byte
	path   string
	size   int64
	sha256 string
}

// writeOVA writes the members into a new ustar archive at out, returning its sha256 and size.
func writeOVA(ctx context.Context, out string, mtime time.Time, members []ovaMember, report func(int64)) (string, int64, error) {
	hf, err := createHashing(out)
	if err != nil {
		return "", 0, err
	}
	err = func() error {
		tw := tar.NewWriter(hf)
		for _, m := range members {
			size := int64(len(m.data))
			if m.path != "" {
				size = m.size
			}
			hdr := &tar.Header{
				Typeflag: tar.TypeReg, Name: m.name, Size: size, Mode: 0o644,
				ModTime: mtime.Truncate(time.Second), Format: tar.FormatUSTAR,
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("add %s: %w", m.name, err)
			}
			if m.path == "" {
				if _, err := tw.Write(m.data); err != nil {
					return fmt.Errorf("add %s: %w", m.name, err)
				}
				continue
			}
			if err := copyMember(ctx, tw, m, report); err != nil {
				return fmt.Errorf("add %s: %w", m.name, err)
			}
		}
		return tw.Close()
	}()
	sum, n, cerr := hf.Close()
	if err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("write %s: %w", out, err)
	}
	return sum, n, nil
}

func copyMember(ctx context.Context, w io.Writer, m ovaMember, report func(int64)) error {
	f, err := os.Open(m.path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(w, h, &discardCounter{ctx: ctx, report: report}), f, make([]byte, 4<<20))
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != m.size || got != m.sha256 {
		return fmt.Errorf("%s changed while it was packed: %d bytes with sha256 %s, the manifest says %d and %s", m.path, n, got, m.size, m.sha256)
	}
	return nil
}

// ovaContents is an OVA as read back: its members in order and what its descriptor says.
type ovaContents struct {
	Members []tarMember
	Desc    ovfRead
	// Manifest maps a file name to the sha256 the manifest gives it.
	Manifest map[string]string
}

type tarMember struct {
	Name   string
	Size   int64
	Offset int64 // of the content in the archive
	Format tar.Format
}

// ovfRead is what readOVA decodes from a descriptor, by namespace, the way an importer reads it.
type ovfRead struct {
	Files []struct {
		Href string `xml:"http://schemas.dmtf.org/ovf/envelope/1 href,attr"`
		ID   string `xml:"http://schemas.dmtf.org/ovf/envelope/1 id,attr"`
		Size int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 size,attr"`
	} `xml:"http://schemas.dmtf.org/ovf/envelope/1 References>File"`
	Disks []struct {
		Capacity int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 capacity,attr"`
		FileRef  string `xml:"http://schemas.dmtf.org/ovf/envelope/1 fileRef,attr"`
		Format   string `xml:"http://schemas.dmtf.org/ovf/envelope/1 format,attr"`
	} `xml:"http://schemas.dmtf.org/ovf/envelope/1 DiskSection>Disk"`
	Items []struct {
		ResourceType    int    `xml:"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData ResourceType"`
		ResourceSubType string `xml:"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData ResourceSubType"`
		VirtualQuantity string `xml:"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData VirtualQuantity"`
		HostResource    string `xml:"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData HostResource"`
	} `xml:"http://schemas.dmtf.org/ovf/envelope/1 VirtualSystem>VirtualHardwareSection>Item"`
	Configs []struct {
		Key   string `xml:"http://www.vmware.com/schema/ovf key,attr"`
		Value string `xml:"http://www.vmware.com/schema/ovf value,attr"`
	} `xml:"VirtualSystem>VirtualHardwareSection>Config"` // vmw:Config in the ovf:VirtualHardwareSection
}

// readOVA reads an OVA's structure: every member's name, size and place (skipping the disks'
// content, by seeking), the descriptor and the manifest.
func readOVA(path string) (ovaContents, error) {
	var c ovaContents
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer f.Close()
	// tar.Reader reads headers a block at a time with no read-ahead, and skips content by
	// seeking when it can: after Next the file is at the member's content, and a disk is never
	// read.
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return c, fmt.Errorf("read the archive: %w", err)
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return c, err
		}
		c.Members = append(c.Members, tarMember{Name: hdr.Name, Size: hdr.Size, Offset: off, Format: hdr.Format})
		switch {
		case strings.HasSuffix(hdr.Name, ".ovf"):
			data, err := io.ReadAll(tr)
			if err != nil {
				return c, err
			}
			if err := xml.Unmarshal(data, &c.Desc); err != nil {
				return c, fmt.Errorf("parse %s: %w", hdr.Name, err)
			}
		case strings.HasSuffix(hdr.Name, ".mf"):
			data, err := io.ReadAll(tr)
			if err != nil {
				return c, err
			}
			if c.Manifest, err = parseManifest(data); err != nil {
				return c, fmt.Errorf("parse %s: %w", hdr.Name, err)
			}
		}
	}
	return c, nil
}

func parseManifest(data []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		rest, ok := strings.CutPrefix(line, "SHA256(")
		name, sum, ok2 := strings.Cut(rest, ")= ")
		if !ok || !ok2 || len(sum) != 64 {
			return nil, fmt.Errorf("bad line %q", line)
		}
		out[name] = sum
	}
	return out, sc.Err()
}

// verifyOVA checks what an importer checks before it reads a disk: ustar members, descriptor
// first and manifest second, then the referenced files in reference order with the sizes the
// descriptor gives, and a manifest line for every other member. The disk's checksum was checked
// as it was packed (copyMember).
func verifyOVA(path string) error {
	c, err := readOVA(path)
	if err != nil {
		return err
	}
	if len(c.Members) < 3 || !strings.HasSuffix(c.Members[0].Name, ".ovf") || !strings.HasSuffix(c.Members[1].Name, ".mf") {
		return fmt.Errorf("members %v: want the descriptor, the manifest, then the disks", memberNames(c.Members))
	}
	if len(c.Desc.Files) != len(c.Members)-2 {
		return fmt.Errorf("the descriptor references %d files, the archive has %d besides descriptor and manifest", len(c.Desc.Files), len(c.Members)-2)
	}
	for i, ref := range c.Desc.Files {
		m := c.Members[i+2]
		if m.Name != ref.Href || m.Size != ref.Size {
			return fmt.Errorf("member %d is %s (%d bytes), the descriptor says %s (%d bytes)", i+2, m.Name, m.Size, ref.Href, ref.Size)
		}
	}
	for _, m := range c.Members {
		if m.Format != tar.FormatUSTAR {
			return fmt.Errorf("member %s is not ustar (%v)", m.Name, m.Format)
		}
		if _, ok := c.Manifest[m.Name]; !ok && !strings.HasSuffix(m.Name, ".mf") {
			return fmt.Errorf("the manifest has no checksum for %s", m.Name)
		}
	}
	return nil
}

func memberNames(ms []tarMember) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}
