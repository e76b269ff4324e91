package drift

import (
	"fmt"
	"testing"

	"github.com/ingot-build/ingot/manifest"
)

// inventory30k is an inventory the size of a full Debian image: 30,000 entries spread over
// the usual top-level directories, a tenth of them under noise paths.
func inventory30k(seed int) []manifest.Entry {
	tops := []string{"/usr/lib/x86_64-linux-gnu", "/usr/share/doc", "/usr/bin", "/etc", "/var/lib/dpkg/info", "/var/log", "/opt/app", "/usr/share/locale"}
	var inv []manifest.Entry
	for i := range 30000 {
		dir := tops[i%len(tops)]
		sha := fmt.Sprintf("%064x", i)
		if i%100 == seed {
			sha = fmt.Sprintf("%064x", i+seed*1_000_000)
		}
		inv = append(inv, file(fmt.Sprintf("%s/sub%d/file%05d", dir, i%37, i), "0644", int64(i*13), sha))
	}
	return inv
}

// BenchmarkLoadAndCompare is `ingot diff` on two builds of a full Debian image, less the
// process start: both inventories read and checked, compared, and rendered as text.
func BenchmarkLoadAndCompare(b *testing.B) {
	dirA := writeBuild(b, &manifest.Manifest{Name: "web"}, inventory30k(1))
	dirB := writeBuild(b, &manifest.Manifest{Name: "web"}, inventory30k(2))
	b.ResetTimer()
	for range b.N {
		a, err := Load(dirA, nil)
		if err != nil {
			b.Fatal(err)
		}
		bb, err := Load(dirB, nil)
		if err != nil {
			b.Fatal(err)
		}
		r := Compare(a, bb, Options{})
		// 600 paths changed, 150 of them under /var/log.
		if len(r.Files.Changed) != 450 {
			b.Fatalf("%d changed", len(r.Files.Changed))
		}
		if err := r.WriteText(discard{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompare is the comparison alone, on 30,000 entries a side.
func BenchmarkCompare(b *testing.B) {
	a, bb := side("a", nil, inventory30k(1)), side("b", nil, inventory30k(2))
	b.ResetTimer()
	for range b.N {
		Compare(a, bb, Options{})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
