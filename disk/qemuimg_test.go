package disk

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// The qemu-img JSON in testdata was captured from qemu-img 7.2 on a qcow2 overlay over the test
// cloud image, with one write of data and one of zeros in the overlay.

func TestParseMap(t *testing.T) {
	data, err := os.ReadFile("testdata/qemu-img-map.json")
	if err != nil {
		t.Fatal(err)
	}
	ext, err := parseMap(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != 8 || ext[0].Offset == nil || *ext[0].Offset != 327680 || ext[1].Depth != 1 || !ext[2].Zero || ext[2].Data {
		t.Errorf("extents %+v", ext)
	}
	// Data at depth 0 and 1 counts; the zero cluster written in the overlay and holes do not.
	if got, want := dataBytes(ext), int64(131072+65536+65536+851968); got != want {
		t.Errorf("dataBytes = %d, want %d", got, want)
	}
}

func TestParseMeasureAndInfo(t *testing.T) {
	var m Measurement
	data, _ := os.ReadFile("testdata/qemu-img-measure.json")
	if err := json.Unmarshal(data, &m); err != nil || m.Required <= 0 || m.FullyAllocated != 2148073472 {
		t.Errorf("measure: %+v, %v", m, err)
	}
	var info ImageInfo
	data, _ = os.ReadFile("testdata/qemu-img-info.json")
	if err := json.Unmarshal(data, &info); err != nil || info.Format != "qcow2" || info.VirtualSize != 2<<30 || info.BackingFile == "" {
		t.Errorf("info: %+v, %v", info, err)
	}
}

func TestAllocatedAndMeasure(t *testing.T) {
	d := fixture(t, "gpt")
	ctx := context.Background()
	rawData, err := Allocated(ctx, d.Raw)
	if err != nil {
		t.Fatal(err)
	}
	chainData, err := Allocated(ctx, d.Qcow2)
	if err != nil {
		t.Fatal(err)
	}
	// The raw file counts every block mkfs wrote, zeros included; the qcow2 chain was written
	// by qemu-img convert, which leaves zero clusters out.
	if rawData <= 0 || rawData > d.Size/4 || chainData <= 0 || chainData > rawData {
		t.Errorf("allocated: raw %d, qcow2 chain %d", rawData, chainData)
	}
	m, err := Measure(ctx, d.Qcow2, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if m.Required < chainData || m.FullyAllocated < d.Size {
		t.Errorf("measure %+v for %d bytes of data", m, chainData)
	}
}

// TestPercentWriter feeds qemu-img -p output cut at every possible place.
func TestPercentWriter(t *testing.T) {
	out := []byte("    (0.00/100%)\r    (1.01/100%)\r    (50.00/100%)\r    (100.00/100%)\r\n")
	for cut := 0; cut <= len(out); cut++ {
		var got []float64
		w := &percentWriter{report: func(f float64) { got = append(got, f) }}
		w.Write(out[:cut])
		w.Write(out[cut:])
		if len(got) == 0 || got[len(got)-1] != 1 {
			t.Fatalf("cut at %d: reports %v, want to end at 1", cut, got)
		}
		for i := 1; i < len(got); i++ {
			if got[i] < got[i-1] {
				t.Errorf("cut at %d: reports went back: %v", cut, got)
			}
		}
	}
}

func TestMeter(t *testing.T) {
	var got [][2]int64
	m := newMeter(func(d, tot int64) { got = append(got, [2]int64{d, tot}) }, 100, 50)
	a := m.next()
	a(0.5)
	a(0.25) // going back is not reported
	a(2)    // clamped to the stage
	b := m.nextBytes()
	b(10, 20)
	m.finish()
	want := [][2]int64{{0, 150}, {50, 150}, {100, 150}, {125, 150}, {150, 150}}
	if len(got) != len(want) {
		t.Fatalf("reports %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("reports %v, want %v", got, want)
		}
	}
}

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
