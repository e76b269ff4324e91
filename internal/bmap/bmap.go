// Package bmap reads and writes block maps in bmap-tools' format 2.0 (bmaptools/BmapCreate.py,
// bmap-tools 3.6 in Debian 12): the list of blocks of a raw image that hold data, with a checksum
// of each run, so that a flasher writes only those and verifies them as it goes (a 4 GiB image
// with 1 GiB of data writes 1 GiB). disk writes them beside raw outputs; flash reads them, ingot's
// and `bmaptool create`'s alike. One copy of the format, for both.
package bmap

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// BlockSize is the block size of the maps ingot writes. bmaptool takes the filesystem's block
// size, which is 4096 on every Linux filesystem an image is built on; a fixed value keeps outputs
// reproducible wherever they are built. Maps from elsewhere may have another (Map.BlockSize).
const BlockSize = 4096

// Range is a run of mapped blocks, First to Last inclusive, and the checksum (hex) of their bytes;
// the last block of the image stops at the image's end.
type Range struct {
	First, Last int64
	SHA256      string // the hex checksum, of the map's ChecksumType (sha256 in every map ingot writes)
}

// Map is a parsed bmap whose counts, ranges and own checksum have been checked (Parse).
type Map struct {
	ImageSize    int64
	BlockSize    int64
	BlocksCount  int64
	MappedBlocks int64
	ChecksumType string // "sha256" or "sha1"
	Ranges       []Range
}

// Span returns the bytes of the image that r covers: its offset and length, the last block
// stopping at the image's end.
func (m *Map) Span(r Range) (off, n int64) {
	off = r.First * m.BlockSize
	end := min((r.Last+1)*m.BlockSize, m.ImageSize)
	return off, end - off
}

// MappedBytes is how many bytes of the image the ranges cover: what a flash writes.
func (m *Map) MappedBytes() int64 {
	var n int64
	for _, r := range m.Ranges {
		_, l := m.Span(r)
		n += l
	}
	return n
}

// NewHash returns a hash of the map's checksum type, for checking a range's bytes.
func (m *Map) NewHash() hash.Hash {
	if m.ChecksumType == "sha1" {
		return sha1.New()
	}
	return sha256.New()
}

const header = `<?xml version="1.0" ?>
<!-- This file contains the block map for an image file, which is basically
     a list of useful (mapped) block numbers in the image file. In other words,
     it lists only those blocks which contain data (boot sector, partition
     table, file-system metadata, files, directories, extents, etc). These
     blocks have to be copied to the target device. The other blocks do not
     contain any useful data and do not have to be copied to the target
     device.

     The block map an optimization which allows to copy or flash the image to
     the image quicker than copying of flashing the entire image. This is
     because with bmap less data is copied: <MappedBlocksCount> blocks instead
     of <BlocksCount> blocks.

     Besides the machine-readable data, this file contains useful commentaries
     which contain human-readable information like image size, percentage of
     mapped data, etc.

     The 'version' attribute is the block map file format version in the
     'major.minor' format. The version major number is increased whenever an
     incompatible block map format change is made. The minor number changes
     in case of minor backward-compatible changes. -->

<bmap version="2.0">
    <!-- Image size in bytes: %s -->
    <ImageSize> %d </ImageSize>

    <!-- Size of a block in bytes -->
    <BlockSize> %d </BlockSize>

    <!-- Count of blocks in the image file -->
    <BlocksCount> %d </BlocksCount>

`

// Render writes the bmap of an image of size bytes in blocks of BlockSize whose mapped blocks are
// ranges (sha256 checksums), byte for byte the way `bmaptool create` writes it, so that a file
// from ingot and one from bmaptool can be compared with cmp.
func Render(size int64, ranges []Range) []byte {
	blocks := (size + BlockSize - 1) / BlockSize
	var mapped int64
	for _, r := range ranges {
		mapped += r.Last - r.First + 1
	}
	percent := 0.0
	if blocks > 0 {
		percent = float64(mapped) * 100 / float64(blocks)
	}
	imageHuman := HumanSize(size)

	var b bytes.Buffer
	fmt.Fprintf(&b, header, imageHuman, size, BlockSize, blocks)
	// bmaptool writes blank placeholders sized for the longest values, then overwrites their
	// start once it knows the counts; a longer value runs over what follows. Do the same.
	b.WriteString("    <!-- Count of mapped blocks: ")
	b.Write(overwrite(strings.Repeat(" ", len(imageHuman))+" or "+strings.Repeat(" ", len("100.0%"))+"   -->\n",
		fmt.Sprintf("%s or %.1f%%", HumanSize(mapped*BlockSize), percent)))
	b.WriteString("    <MappedBlocksCount> ")
	b.Write(overwrite(strings.Repeat(" ", len(strconv.FormatInt(blocks, 10)))+" </MappedBlocksCount>\n\n",
		strconv.FormatInt(mapped, 10)))
	b.WriteString("    <!-- Type of checksum used in this file -->\n")
	b.WriteString("    <ChecksumType> sha256 </ChecksumType>\n\n")
	b.WriteString("    <!-- The checksum of this bmap file. When it is calculated, the value of\n")
	b.WriteString("         the checksum has be zero (all ASCII \"0\" symbols).  -->\n")
	b.WriteString("    <BmapFileChecksum> ")
	sumAt := b.Len()
	b.WriteString(strings.Repeat("0", 64) + " </BmapFileChecksum>\n\n")
	b.WriteString("    <!-- The block map which consists of elements which may either be a\n")
	b.WriteString("         range of blocks or a single block. The 'chksum' attribute\n")
	b.WriteString("         (if present) is the checksum of this blocks range. -->\n")
	b.WriteString("    <BlockMap>\n")
	for _, r := range ranges {
		if r.First == r.Last {
			fmt.Fprintf(&b, "        <Range chksum=\"%s\"> %d </Range>\n", r.SHA256, r.First)
		} else {
			fmt.Fprintf(&b, "        <Range chksum=\"%s\"> %d-%d </Range>\n", r.SHA256, r.First, r.Last)
		}
	}
	b.WriteString("    </BlockMap>\n</bmap>\n")

	out := b.Bytes()
	sum := sha256.Sum256(out) // with the checksum field all zeros, as bmaptool computes it
	copy(out[sumAt:], hex.EncodeToString(sum[:]))
	return out
}

// overwrite writes s over the start of placeholder, as a seek-and-write over a file would.
func overwrite(placeholder, s string) []byte {
	b := []byte(placeholder)
	if len(s) > len(b) {
		return []byte(s) // the placeholder always ends in a newline, never overrun by counts
	}
	copy(b, s)
	return b
}

// HumanSize is bmaptools.BmapHelpers.human_size, which the bmap's comments use.
func HumanSize(n int64) string {
	if n == 1 {
		return "1 byte"
	}
	if n < 512 {
		return fmt.Sprintf("%d bytes", n)
	}
	size := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		size /= 1024
		if size < 1024 {
			return fmt.Sprintf("%.1f %s", size, unit)
		}
	}
	return fmt.Sprintf("%.1f EiB", size)
}

// file is the XML of a bmap, as Parse decodes it.
type file struct {
	Version      string `xml:"version,attr"`
	ImageSize    string `xml:"ImageSize"`
	BlockSize    string `xml:"BlockSize"`
	BlocksCount  string `xml:"BlocksCount"`
	MappedBlocks string `xml:"MappedBlocksCount"`
	ChecksumType string `xml:"ChecksumType"`
	FileChecksum string `xml:"BmapFileChecksum"`
	Ranges       []struct {
		Chksum string `xml:"chksum,attr"`
		Blocks string `xml:",chardata"`
	} `xml:"BlockMap>Range"`
}

// Parse reads a bmap of format 2.x and checks it the way bmaptool does before it trusts one: its
// counts agree with each other, its ranges are ordered, within the image and carry checksums of
// its checksum type (sha256, or sha1 which format 2.0 also allows), and its own checksum is right.
// Format 1.x (sha1 of the whole file in another element, ranges without checksums) is refused:
// nothing has written it since bmap-tools 3.0 (2014), and without checksums nothing is verified.
func Parse(data []byte) (*Map, error) {
	var f file
	if err := xml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse the bmap: %w", err)
	}
	num := func(field, s string) (int64, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bmap %s %q: %w", field, s, err)
		}
		return n, nil
	}
	if major, _, _ := strings.Cut(f.Version, "."); major != "2" {
		return nil, fmt.Errorf("bmap version %q, want 2.x", f.Version)
	}
	m := &Map{ChecksumType: strings.TrimSpace(f.ChecksumType)}
	var err error
	if m.ImageSize, err = num("ImageSize", f.ImageSize); err != nil {
		return nil, err
	}
	if m.BlockSize, err = num("BlockSize", f.BlockSize); err != nil {
		return nil, err
	}
	if m.BlocksCount, err = num("BlocksCount", f.BlocksCount); err != nil {
		return nil, err
	}
	if m.MappedBlocks, err = num("MappedBlocksCount", f.MappedBlocks); err != nil {
		return nil, err
	}
	if m.ImageSize < 0 || m.BlockSize <= 0 || m.BlocksCount != (m.ImageSize+m.BlockSize-1)/m.BlockSize {
		return nil, fmt.Errorf("bmap says %d bytes in %d blocks of %d, which do not agree", m.ImageSize, m.BlocksCount, m.BlockSize)
	}
	sumLen := map[string]int{"sha256": 64, "sha1": 40}[m.ChecksumType]
	if sumLen == 0 {
		return nil, fmt.Errorf("bmap checksum type %q, want sha256 or sha1", f.ChecksumType)
	}
	var count, next int64
	for i, r := range f.Ranges {
		first, last, err := parseRange(r.Blocks)
		if err != nil {
			return nil, err
		}
		if first < next || last < first || last >= m.BlocksCount {
			return nil, fmt.Errorf("bmap range %d (%d-%d) is out of order or outside the image's %d blocks", i, first, last, m.BlocksCount)
		}
		if len(r.Chksum) != sumLen || !isHex(r.Chksum) {
			return nil, fmt.Errorf("bmap range %d (%d-%d) has no %s", i, first, last, m.ChecksumType)
		}
		m.Ranges = append(m.Ranges, Range{First: first, Last: last, SHA256: strings.ToLower(r.Chksum)})
		count += last - first + 1
		next = last + 1
	}
	if count != m.MappedBlocks {
		return nil, fmt.Errorf("bmap ranges hold %d blocks, MappedBlocksCount says %d", count, m.MappedBlocks)
	}
	want := strings.TrimSpace(f.FileChecksum)
	at := bytes.Index(data, []byte(want))
	if len(want) != sumLen || at < 0 {
		return nil, fmt.Errorf("bmap file checksum %q is not a %s", want, m.ChecksumType)
	}
	zeroed := bytes.Clone(data)
	copy(zeroed[at:], strings.Repeat("0", sumLen))
	h := m.NewHash()
	h.Write(zeroed)
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return nil, fmt.Errorf("bmap file checksum mismatch: computed %s, the file says %s", got, want)
	}
	return m, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// parseRange reads the text of a Range element: "N" or "N-M".
func parseRange(s string) (first, last int64, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	first, err = strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	if err == nil {
		last = first
		if isRange {
			last, err = strconv.ParseInt(strings.TrimSpace(b), 10, 64)
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("bmap range %q: %w", s, err)
	}
	return first, last, nil
}
