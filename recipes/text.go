package recipes

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// sniffLen is how much of a file Load reads before deciding it is text: enough to reach the
// ISO 9660 volume descriptor at byte 32769.
const sniffLen = 64 << 10

// utf8BOM is the byte-order mark as UTF-8 encodes it (U+FEFF).
const utf8BOM = "\ufeff"

// signature is a file format recognised by its magic bytes, so that a disk image or an archive
// named as a recipe is called what it is rather than "binary data".
type signature struct {
	off   int
	magic string
	what  string
	hint  string
}

const (
	imageHint   = "name the recipe (a .yaml file) that builds from it: an image goes under source: disk: url: or iso: url:"
	archiveHint = "if a recipe is inside, unpack it and name the .yaml file"
	binaryHint  = "name the recipe file (YAML text)"
)

// signatures are checked only once a file has failed as text, so a recipe that happens to start
// with "BZh" or "PK" is still read as one.
func signatures() []signature {
	return []signature{
		{0, "QFI\xfb", "a qcow2 disk image", imageHint},
		{0, "KDMV", "a VMDK disk image", imageHint},
		{0, "vhdxfile", "a VHDX disk image", imageHint},
		{0, "conectix", "a VHD disk image", imageHint},
		{0x8001, "CD001", "an ISO 9660 image", imageHint}, // the primary volume descriptor, after 32 KiB of system area
		{0, "\x1f\x8b", "gzip-compressed data", archiveHint},
		{0, "\xfd7zXZ\x00", "xz-compressed data", archiveHint},
		{0, "\x28\xb5\x2f\xfd", "zstd-compressed data", archiveHint},
		{0, "BZh", "bzip2-compressed data", archiveHint},
		{0, "PK\x03\x04", "a zip archive", archiveHint},
		{257, "ustar", "a tar archive", archiveHint},
		{0, "\x7fELF", "a program (ELF)", binaryHint},
		{510, "\x55\xaa", "a raw disk image (it has a boot sector)", imageHint},
	}
}

// notText returns the error for data that is not UTF-8 text, or nil. Without it a binary file
// fails somewhere deep in the YAML parser ("found invalid tag character" at line 382), and a
// UTF-16 file as "a string". complete is false when data is only the head of a file: a character
// cut in two at its end is then not an error.
func notText(name string, data []byte, complete bool) *Error {
	start := 0
	if bytes.HasPrefix(data, []byte(utf8BOM)) {
		start = len(utf8BOM)
	}
	nul := bytes.IndexByte(data, 0)
	bad := -1 // the first byte that is not valid UTF-8
	for i := start; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			if complete || utf8.FullRune(data[i:]) {
				bad = i
			}
			break
		}
		i += size
	}
	if nul < 0 && bad < 0 {
		return nil
	}
	// at is the position of the byte at off as an editor shows it: columns in characters, from the
	// first after the byte-order mark.
	at := func(off int) Pos {
		text := data[start:off]
		line := bytes.Count(text, []byte("\n")) + 1
		col := utf8.RuneCount(text[bytes.LastIndexByte(text, '\n')+1:]) + 1
		return Pos{File: name, Line: line, Col: col}
	}
	const saveUTF8 = "save it as UTF-8 (in Notepad: Save As, Encoding: UTF-8)"
	switch {
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE, 0, 0}), bytes.HasPrefix(data, []byte{0, 0, 0xFE, 0xFF}):
		return &Error{Pos: at(start), Msg: "the recipe is UTF-32 text, not UTF-8", Hint: saveUTF8}
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}), bytes.HasPrefix(data, []byte{0xFE, 0xFF}), looksUTF16(data):
		return &Error{Pos: at(start), Msg: "the recipe is UTF-16 text, not UTF-8", Hint: saveUTF8}
	}
	for _, s := range signatures() {
		if bytes.HasPrefix(data[min(s.off, len(data)):], []byte(s.magic)) {
			return &Error{Pos: at(start), Msg: "the recipe is not a text YAML file: it looks like " + s.what, Hint: s.hint}
		}
	}
	// Text never has a NUL byte; binary data nearly always does (git's test for binary files).
	if nul >= 0 {
		return &Error{Pos: at(nul), Msg: fmt.Sprintf("the recipe is not a text YAML file: it looks like binary data (a NUL byte at offset %d)", nul), Hint: binaryHint}
	}
	return &Error{
		Pos:  at(bad),
		Msg:  fmt.Sprintf("the recipe is not UTF-8 text: the byte 0x%02X at offset %d is not valid UTF-8", data[bad], bad),
		Hint: saveUTF8 + "; it may have been written as Latin-1 or Windows-1252",
	}
}

// looksUTF16 reports whether data starts as UTF-16 text without a byte-order mark would: ASCII
// characters, each with a NUL byte beside it.
func looksUTF16(data []byte) bool {
	n := min(len(data), 64) &^ 1
	if n < 4 {
		return false
	}
	for _, zero := range []int{0, 1} { // 1: little-endian, 0: big-endian
		ok := true
		for i := 0; i < n && ok; i += 2 {
			z, c := data[i+zero], data[i+1-zero]
			ok = z == 0 && c != 0 && c < 0x80
		}
		if ok {
			return true
		}
	}
	return false
}
