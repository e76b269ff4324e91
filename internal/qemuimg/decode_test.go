package qemuimg

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The JSON in testdata is what qemu-img 7.2.22 (Debian 12's qemu-utils) printed, decoded here by
// the functions the calls use. testdata/capture.sh makes all of it again except the
// *-cloud-overlay files, which were captured on a qcow2 overlay over the test cloud image (one
// write of data and one of zeros in the overlay). Each case names the fields it relies on and
// the QEMU version that writes them; every field named was checked against QEMU 7.2's output.

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeInfo(t *testing.T) {
	const capture = "/tmp/qemuimg-capture/"
	qcow2 := func(compression string) *FormatSpecific {
		return &FormatSpecific{Type: "qcow2", Data: FormatData{CompressionType: compression}}
	}
	tests := []struct {
		file string
		want []ImageInfo // one image, or a backing chain
	}{
		// backing-filename, full-backing-filename, backing-filename-format: QEMU 1.3;
		// format-specific: 1.7; compression-type: 5.1.
		{"info-cloud-overlay.json", []ImageInfo{{
			Filename: "ov.qcow2", Format: "qcow2", VirtualSize: 2 << 30, ActualSize: 397312, ClusterSize: 65536,
			BackingFilename:     "/root/.cache/ingot/testdata/cloud-c17058152380a7d6/debian-12-cloud.qcow2",
			FullBackingFilename: "/root/.cache/ingot/testdata/cloud-c17058152380a7d6/debian-12-cloud.qcow2",
			BackingFormat:       "qcow2", FormatSpecific: qcow2("zlib"),
		}}},
		// --backing-chain: a JSON array, top first; each overlay records its backing file's
		// format; raw has no cluster size and no format-specific data.
		{"info-backing-chain.json", []ImageInfo{
			{Filename: capture + "top.qcow2", Format: "qcow2", VirtualSize: 128 << 20, ActualSize: 331776, ClusterSize: 65536,
				BackingFilename: capture + "mid.qcow2", FullBackingFilename: capture + "mid.qcow2", BackingFormat: "qcow2",
				FormatSpecific: qcow2("zlib")},
			{Filename: capture + "mid.qcow2", Format: "qcow2", VirtualSize: 64 << 20, ActualSize: 331776, ClusterSize: 65536,
				BackingFilename: capture + "base.raw", FullBackingFilename: capture + "base.raw", BackingFormat: "raw",
				FormatSpecific: qcow2("zstd")},
			{Filename: capture + "base.raw", Format: "raw", VirtualSize: 64 << 20, ActualSize: 1 << 20},
		}},
		// create-type: QEMU 1.7.
		{"info-vmdk-stream.json", []ImageInfo{{
			Filename: capture + "stream.vmdk", Format: "vmdk", VirtualSize: 128 << 20, ActualSize: 90112, ClusterSize: 65536,
			FormatSpecific: &FormatSpecific{Type: "vmdk", Data: FormatData{CreateType: "streamOptimized"}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := readTestdata(t, tt.file)
			var got []ImageInfo
			if strings.HasPrefix(strings.TrimSpace(string(data)), "[") {
				var err error
				if got, err = decodeChain(data); err != nil {
					t.Fatal(err)
				}
			} else {
				info, err := decodeInfo(data)
				if err != nil {
					t.Fatal(err)
				}
				got = []ImageInfo{info}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestDecodeMap(t *testing.T) {
	tests := []struct {
		file    string
		extents int
		data    int64 // DataBytes
		first   Extent
	}{
		// Data at depth 0 and 1 counts; the zero cluster written in the overlay and holes do
		// not. present: QEMU 6.1 (false on the holes, true on the zero cluster the overlay holds).
		{"map-cloud-overlay.json", 8, 131072 + 65536 + 65536 + 851968,
			Extent{Start: 0, Length: 131072, Depth: 0, Present: true, Data: true, Offset: ptr(327680)}},
		// A raw base reports the offset of its data too, and its holes as present zeros.
		{"map-backing-chain.json", 7, 1 << 20,
			Extent{Start: 0, Length: 65536, Depth: 2, Present: true, Data: true, Offset: ptr(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ext, err := decodeMap(readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(ext) != tt.extents || !reflect.DeepEqual(ext[0], tt.first) {
				t.Errorf("%d extents, the first %+v; want %d, %+v", len(ext), ext[0], tt.extents, tt.first)
			}
			if got := DataBytes(ext); got != tt.data {
				t.Errorf("DataBytes = %d, want %d", got, tt.data)
			}
			var end int64
			for i, e := range ext {
				if e.Start != end {
					t.Errorf("extent %d starts at %d, the previous one ends at %d", i, e.Start, end)
				}
				end = e.Start + e.Length
			}
		})
	}
}

func TestDecodeMeasure(t *testing.T) {
	tests := []struct {
		file string
		want Measurement
	}{
		// bitmaps: QEMU 5.1, only when both formats hold persistent bitmaps (qcow2 to qcow2).
		{"measure-cloud-overlay-qcow2.json", Measurement{Required: 450560000, FullyAllocated: 2148073472}},
		{"measure-backing-chain-qcow2.json", Measurement{Required: 1376256, FullyAllocated: 134545408}},
		// To raw, no bitmaps field at all.
		{"measure-backing-chain-raw.json", Measurement{Required: 128 << 20, FullyAllocated: 128 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := decodeMeasure(readTestdata(t, tt.file))
			if err != nil || got != tt.want {
				t.Errorf("decoded %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestDecodeCheck(t *testing.T) {
	const capture = "/tmp/qemuimg-capture/"
	tests := []struct {
		file     string
		want     CheckResult
		problems string
	}{
		// check-errors: QEMU 1.4; corruptions and leaks are left out when 0.
		{"check-clean.json", CheckResult{Filename: capture + "clean.qcow2", Format: "qcow2"}, ""},
		// A data cluster with refcount 0: the missing refcount and the COPIED flag that
		// disagrees with it (exit status 2).
		{"check-corrupt.json", CheckResult{Filename: capture + "corrupt.qcow2", Format: "qcow2", Corruptions: 2}, "2 corruptions"},
		// A cluster counted but used by nothing (exit status 3).
		{"check-leak.json", CheckResult{Filename: capture + "leak.qcow2", Format: "qcow2", Leaks: 1}, "1 leaked cluster"},
		// vmdk reports no counts but check-errors.
		{"check-vmdk-stream.json", CheckResult{Filename: capture + "stream.vmdk", Format: "vmdk"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := decodeCheck(readTestdata(t, tt.file))
			if err != nil || got != tt.want {
				t.Errorf("decoded %+v, %v; want %+v", got, err, tt.want)
			}
			if got.Clean() != (tt.problems == "") || got.problems() != tt.problems {
				t.Errorf("Clean() = %v, problems %q; want %q", got.Clean(), got.problems(), tt.problems)
			}
		})
	}
}

// TestDecodeRefuses checks that output without what a call needs is an error, not a zero value.
func TestDecodeRefuses(t *testing.T) {
	tests := []struct {
		name   string
		decode func([]byte) error
		bad    []string
	}{
		{"info", func(b []byte) error { _, err := decodeInfo(b); return err },
			[]string{``, `{}`, `{"filename": "x"}`, `[{"filename": "x", "format": "raw"}]`}},
		{"chain", func(b []byte) error { _, err := decodeChain(b); return err },
			[]string{`[]`, `{}`, `[{"filename": "x"}]`, `[{"filename": "x", "format": "raw"}, {"format": "raw"}]`}},
		{"map", func(b []byte) error { _, err := decodeMap(b); return err },
			[]string{``, `{}`, `[{"start": "0"}]`}},
		{"measure", func(b []byte) error { _, err := decodeMeasure(b); return err },
			[]string{``, `{}`, `{"required": 1}`, `{"fully-allocated": 1}`}},
		{"check", func(b []byte) error { _, err := decodeCheck(b); return err },
			[]string{``, `{}`, `{"check-errors": 0, "filename": "x"}`}},
	}
	for _, tt := range tests {
		for _, b := range tt.bad {
			if err := tt.decode([]byte(b)); err == nil {
				t.Errorf("%s: %q decodes", tt.name, b)
			}
		}
	}
}

func ptr(n int64) *int64 { return &n }
