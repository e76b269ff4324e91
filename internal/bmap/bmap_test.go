package bmap

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{1: "1 byte", 511: "511 bytes", 512: "0.5 KiB", 64 << 20: "64.0 MiB", 2 << 30: "2.0 GiB", 1023 << 20: "1023.0 MiB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestParseRoundTrip reads back what Render writes, and the byte spans of its ranges, the last
// block stopping at the image's end.
func TestParseRoundTrip(t *testing.T) {
	ranges := []Range{{First: 0, Last: 3, SHA256: strings.Repeat("a", 64)}, {First: 10, Last: 10, SHA256: strings.Repeat("b", 64)}}
	size := int64(10*BlockSize + 100)
	m, err := Parse(Render(size, ranges))
	if err != nil {
		t.Fatal(err)
	}
	if m.ImageSize != size || m.BlockSize != BlockSize || m.BlocksCount != 11 || m.MappedBlocks != 5 || m.ChecksumType != "sha256" {
		t.Errorf("Parse = %+v", m)
	}
	if len(m.Ranges) != 2 || m.Ranges[0] != ranges[0] || m.Ranges[1] != ranges[1] {
		t.Errorf("ranges = %v, want %v", m.Ranges, ranges)
	}
	spans := [][2]int64{}
	for _, r := range m.Ranges {
		off, n := m.Span(r)
		spans = append(spans, [2]int64{off, n})
	}
	if want := [][2]int64{{0, 4 * BlockSize}, {10 * BlockSize, 100}}; spans[0] != want[0] || spans[1] != want[1] {
		t.Errorf("spans = %v, want %v", spans, want)
	}
	if got, want := m.MappedBytes(), int64(4*BlockSize+100); got != want {
		t.Errorf("MappedBytes = %d, want %d", got, want)
	}
}

// resign replaces the file checksum of a bmap that was edited with the right one, so that Parse
// gets past it to the check a test is about.
func resign(t *testing.T, data []byte, sumType string) []byte {
	t.Helper()
	start := bytes.Index(data, []byte("<BmapFileChecksum> ")) + len("<BmapFileChecksum> ")
	end := bytes.Index(data, []byte(" </BmapFileChecksum>"))
	n := map[string]int{"sha256": 64, "sha1": 40}[sumType]
	out := append(append(bytes.Clone(data[:start]), strings.Repeat("0", n)...), data[end:]...)
	var sum []byte
	if sumType == "sha1" {
		s := sha1.Sum(out)
		sum = s[:]
	} else {
		s := sha256.Sum256(out)
		sum = s[:]
	}
	copy(out[start:], hex.EncodeToString(sum))
	return out
}

func TestParseRefuses(t *testing.T) {
	good := Render(1<<20, []Range{{First: 0, Last: 3, SHA256: strings.Repeat("a", 64)}, {First: 10, Last: 10, SHA256: strings.Repeat("b", 64)}})
	edit := func(old, new string) []byte {
		return resign(t, bytes.Replace(good, []byte(old), []byte(new), 1), "sha256")
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"edited range, old checksum", bytes.Replace(good, []byte("> 10 <"), []byte("> 11 <"), 1), "checksum mismatch"},
		{"truncated", good[:len(good)/2], "parse"},
		{"version 1.4", edit(`version="2.0"`, `version="1.4"`), "want 2.x"},
		{"blocks disagree", edit("<BlocksCount> 256 ", "<BlocksCount> 257 "), "do not agree"},
		{"mapped count", edit("<MappedBlocksCount> 5 ", "<MappedBlocksCount> 6 "), "MappedBlocksCount says 6"},
		{"unknown checksum type", edit("<ChecksumType> sha256 ", "<ChecksumType> md5 "), "want sha256 or sha1"},
		{"short range checksum", edit(strings.Repeat("b", 64), strings.Repeat("b", 40)), "has no sha256"},
		{"range checksum not hex", edit(strings.Repeat("b", 64), strings.Repeat("z", 64)), "has no sha256"},
		{"overlapping", Render(1<<20, []Range{{First: 0, Last: 3, SHA256: strings.Repeat("a", 64)}, {First: 2, Last: 5, SHA256: strings.Repeat("b", 64)}}), "out of order"},
		{"past the end", Render(1<<20, []Range{{First: 256, Last: 256, SHA256: strings.Repeat("a", 64)}}), "outside"},
		{"not a number", edit("> 10 <", "> ten <"), `range " ten "`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.data)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
}

// TestParseSHA1 reads a format 2.0 map whose checksums are sha1, which the format allows and
// bmaptool reads.
func TestParseSHA1(t *testing.T) {
	data := Render(1<<20, []Range{{First: 0, Last: 3, SHA256: strings.Repeat("a", 64)}})
	data = bytes.Replace(data, []byte("<ChecksumType> sha256 "), []byte("<ChecksumType> sha1 "), 1)
	data = bytes.Replace(data, []byte(strings.Repeat("a", 64)), []byte(strings.Repeat("a", 40)), 1)
	m, err := Parse(resign(t, data, "sha1"))
	if err != nil {
		t.Fatal(err)
	}
	h := m.NewHash()
	if m.ChecksumType != "sha1" || h.Size() != sha1.Size {
		t.Errorf("checksum type %q, hash size %d", m.ChecksumType, h.Size())
	}
}
