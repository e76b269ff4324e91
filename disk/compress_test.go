package disk

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestZstdZeroFrames checks the hand-made zero frames with both decoders ingot's users meet: the
// zstd CLI (what bmaptool runs) and klauspost/compress, alone and between encoder frames.
func TestZstdZeroFrames(t *testing.T) {
	for _, n := range []int64{1, zstdBlockMax - 1, zstdBlockMax, zstdBlockMax + 1, 5<<20 + 3} {
		var buf bytes.Buffer
		s, err := newZstdSink(&buf)
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("data "), 1000)
		want := append(append(append([]byte{}, data...), make([]byte, n)...), data...)
		if err := s.data(data); err != nil {
			t.Fatal(err)
		}
		if err := s.endFrame(); err != nil {
			t.Fatal(err)
		}
		if err := writeZstdZeroFrame(&buf, n); err != nil {
			t.Fatal(err)
		}
		if err := s.data(data); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		dec, _ := zstd.NewReader(bytes.NewReader(buf.Bytes()))
		got, err := io.ReadAll(dec)
		dec.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("n=%d: klauspost decodes %d bytes (%v), want %d", n, len(got), err, len(want))
		}
		path := filepath.Join(t.TempDir(), "z.zst")
		os.WriteFile(path, buf.Bytes(), 0o644)
		got, err = exec.Command("zstd", "-dc", path).Output()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("n=%d: zstd -dc gives %d bytes (%v), want %d", n, len(got), err, len(want))
		}
	}
}

// TestStreamCheckCatchesCorruption checks that the decompression that verifies a compressed raw
// image notices a damaged stream, for both compressors.
func TestStreamCheckCatchesCorruption(t *testing.T) {
	data := textBytes(rand.New(rand.NewSource(4)), 1<<20)
	for _, kind := range []string{"zstd", "xz"} {
		var buf bytes.Buffer
		sink, err := newCompressSink(kind, &buf)
		if err != nil {
			t.Fatal(err)
		}
		sink.data(data)
		sink.hole(3 << 20)
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		check := startStreamCheck(context.Background(), kind)
		check.Write(buf.Bytes())
		if n, err := check.Wait(); err != nil || n != int64(len(data))+3<<20 {
			t.Errorf("%s: intact stream decodes to %d bytes, %v", kind, n, err)
		}
		bad := bytes.Clone(buf.Bytes())
		bad[len(bad)/3] ^= 0xff
		check = startStreamCheck(context.Background(), kind)
		check.Write(bad)
		if n, err := check.Wait(); err == nil && n == int64(len(data))+3<<20 {
			t.Errorf("%s: a damaged stream verifies", kind)
		}
	}
}
