package disk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
)

// A bmap (block map) lists the blocks of a raw image that hold data, with a checksum of each run,
// so bmaptool flashes only those and verifies them as it goes: a 4 GiB image with 1 GiB of data
// writes 1 GiB. The format is bmap-tools' version 2.0 (bmaptools/BmapCreate.py, bmap-tools 3.6 in
// Debian 12), written byte for byte the way `bmaptool create` writes it, so a file from ingot
// and one from bmaptool can be compared with cmp.

// bmapBlockSize is the block size of the map. bmaptool takes the filesystem's block size, which
// is 4096 on every Linux filesystem an image is built on; a fixed value keeps outputs
// reproducible wherever they are built.
const bmapBlockSize = 4096

// bmapRange is a run of mapped blocks, First to Last inclusive, and the sha256 of their bytes (the
// last block of the image stops at the image's end).
type bmapRange struct {
	First, Last int64
	SHA256      string
}

const bmapHeader = `<?xml version="1.0" ?>
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

// renderBmap writes the bmap of an image of size bytes whose mapped blocks are ranges.
func renderBmap(size int64, ranges []bmapRange) []byte {
	blocks := (size + bmapBlockSize - 1) / bmapBlockSize
	var mapped int64
	for _, r := range ranges {
		mapped += r.Last - r.First + 1
	}
	percent := 0.0
	if blocks > 0 {
		percent = float64(mapped) * 100 / float64(blocks)
	}
	imageHuman := bmapHumanSize(size)

	var b bytes.Buffer
	fmt.Fprintf(&b, bmapHeader, imageHuman, size, bmapBlockSize, blocks)
	// bmaptool writes blank placeholders sized for the longest values, then overwrites their
	// start once it knows the counts; a longer value runs over what follows. Do the same.
	b.WriteString("    <!-- Count of mapped blocks: ")
	b.Write(overwrite(strings.Repeat(" ", len(imageHuman))+" or "+strings.Repeat(" ", len("100.0%"))+"   -->\n",
		fmt.Sprintf("%s or %.1f%%", bmapHumanSize(mapped*bmapBlockSize), percent)))
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

// bmapHumanSize is bmaptools.BmapHelpers.human_size.
func bmapHumanSize(n int64) string {
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

// bmapFile is what verifyBmap reads back.
type bmapFile struct {
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

// verifyBmap checks a bmap the way bmaptool reads it before it trusts it: it parses, its counts
// agree with each other and with the image's size, its ranges are ordered, within the image and
// carry checksums, and its own checksum is right. The range checksums are not recomputed here:
// they were taken from the very bytes that went into the image, in the same pass, and bmaptool
// checks each one as it flashes.
func verifyBmap(data []byte, size int64) error {
	var f bmapFile
	if err := xml.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("parse the bmap: %w", err)
	}
	num := func(field, s string) (int64, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bmap %s %q: %w", field, s, err)
		}
		return n, nil
	}
	if f.Version != "2.0" {
		return fmt.Errorf("bmap version %q, want 2.0", f.Version)
	}
	image, err := num("ImageSize", f.ImageSize)
	if err != nil {
		return err
	}
	bs, err := num("BlockSize", f.BlockSize)
	if err != nil {
		return err
	}
	blocks, err := num("BlocksCount", f.BlocksCount)
	if err != nil {
		return err
	}
	mapped, err := num("MappedBlocksCount", f.MappedBlocks)
	if err != nil {
		return err
	}
	if image != size || bs != bmapBlockSize || blocks != (size+bs-1)/bs {
		return fmt.Errorf("bmap says %d bytes in %d blocks of %d, the image is %d bytes", image, blocks, bs, size)
	}
	if strings.TrimSpace(f.ChecksumType) != "sha256" {
		return fmt.Errorf("bmap checksum type %q, want sha256", f.ChecksumType)
	}
	var count, next int64
	for i, r := range f.Ranges {
		first, last, err := parseBmapRange(r.Blocks)
		if err != nil {
			return err
		}
		if first < next || last < first || last >= blocks {
			return fmt.Errorf("bmap range %d (%d-%d) is out of order or outside the image's %d blocks", i, first, last, blocks)
		}
		if len(r.Chksum) != 64 {
			return fmt.Errorf("bmap range %d (%d-%d) has no sha256", i, first, last)
		}
		count += last - first + 1
		next = last + 1
	}
	if count != mapped {
		return fmt.Errorf("bmap ranges hold %d blocks, MappedBlocksCount says %d", count, mapped)
	}
	want := strings.TrimSpace(f.FileChecksum)
	at := bytes.Index(data, []byte(want))
	if len(want) != 64 || at < 0 {
		return fmt.Errorf("bmap file checksum %q is not a sha256", want)
	}
	zeroed := bytes.Clone(data)
	copy(zeroed[at:], strings.Repeat("0", 64))
	if got := sha256.Sum256(zeroed); hex.EncodeToString(got[:]) != want {
		return fmt.Errorf("bmap file checksum mismatch: computed %x, the file says %s", got, want)
	}
	return nil
}

func parseBmapRange(s string) (first, last int64, err error) {
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
