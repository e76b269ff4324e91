package libvirt

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/ingot-build/ingot/internal/testguest"
)

// Volumes go up and come back byte-identical, many times over, on both daemons. This is the
// regression test for go-libvirt's stream handling (stream.go): with go-libvirt's
// StorageVolDownload, libvirtd 9.0 sending a data packet before the call's reply made about one
// download in a hundred lose 256 KiB or deadlock the connection.
func TestTransfersRoundTripRepeatedly(t *testing.T) {
	t.Parallel()
	for _, uri := range []string{DefaultURI, testguest.RemoteLibvirtURI()} {
		t.Run(uri, func(t *testing.T) {
			cn, c, p := poolConn(t, uri)
			ctx := context.Background()
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
			var up, down transferStats
			for i := range 100 {
				want := make([]byte, 1<<20)
				sparse := i%2 == 1
				if sparse { // a hole bigger than uploadGap between two data runs: two ranged uploads
					want = make([]byte, 64<<10+uploadGap+64<<10+64<<10)
				}
				for j := range want {
					want[j] = byte(i + j*7)
				}
				if sparse {
					clear(want[64<<10 : 64<<10+uploadGap+64<<10])
				}
				writeSparse(t, src, want)
				vol, err := createVolume(c, p, fmt.Sprintf("ingot-transfer-%08x-d0.img", i), uint64(len(want)))
				if err != nil {
					t.Fatal(err)
				}
				func() {
					defer deleteVolume(c, vol)
					tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					st, err := upload(tctx, c, vol, src)
					if err != nil {
						t.Fatalf("upload %d: %v", i, err)
					}
					up.bytes += st.bytes
					up.elapsed += st.elapsed
					if err := os.WriteFile(dst, nil, 0o600); err != nil {
						t.Fatal(err)
					}
					st, err = download(tctx, cn, vol, dst)
					if err != nil {
						t.Fatalf("download %d: %v", i, err)
					}
					down.bytes += st.bytes
					down.elapsed += st.elapsed
				}()
				if got, _ := os.ReadFile(dst); !bytes.Equal(got, want) {
					t.Fatalf("round trip %d (sparse %v): %d bytes back, want %d, or different bytes", i, sparse, len(got), len(want))
				}
			}
			t.Logf("100 round trips: uploaded %s, downloaded %s (connection set-up included)", up, down)
		})
	}
}

// writeSparse writes b to path, leaving 64 KiB runs of zeros as holes.
func writeSparse(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zero := make([]byte, 64<<10)
	for off := 0; off < len(b); off += len(zero) {
		end := min(off+len(zero), len(b))
		if bytes.Equal(b[off:end], zero[:end-off]) {
			continue
		}
		if _, err := f.WriteAt(b[off:end], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// A name already taken (a volume or a domain of another build, or of a person) is refused with
// what to run to remove it, against the real daemon.
func TestNameTakenSaysWhatToDo(t *testing.T) {
	t.Parallel()
	cn, c, p := poolConn(t, DefaultURI)
	name := domainName("taken")
	vol, err := createVolume(c, p, name+"-d0.img", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer deleteVolume(c, vol)
	if _, err := createVolume(c, p, name+"-d0.img", 1<<20); err == nil || !strings.Contains(err.Error(), "already exists") || !strings.Contains(err.Error(), "virsh vol-delete --pool "+p.name) {
		t.Errorf("second volume of the same name: %v", err)
	}

	// A paused transient domain holds the name; creating another under it fails as libvirt
	// says, explained.
	doc := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>16</memory><os><type arch='x86_64' machine='q35'>hvm</type></os></domain>`, name)
	dom, err := c.DomainCreateXML(doc, golibvirt.DomainStartPaused)
	if err != nil {
		t.Fatal(err)
	}
	defer c.DomainDestroy(dom)
	_, err = c.DomainCreateXML(doc, golibvirt.DomainStartPaused)
	if err == nil {
		t.Fatal("a second domain of the same name was created")
	}
	err = explainCreate(err, name, cn.t)
	if !strings.Contains(err.Error(), "a domain named "+name+" already exists") || !strings.Contains(err.Error(), "virsh -c qemu:///system destroy "+name) {
		t.Errorf("explained: %v", err)
	}
}

// poolConn connects to the daemon at uri (closed when the test ends) and makes sure ingot's pool
// is there.
func poolConn(t *testing.T, uri string) (*connector, *conn, pool) {
	t.Helper()
	tg, err := parseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	cn := &connector{t: tg}
	c, err := cn.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.close() })
	p, err := ensurePool(c, DefaultPool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return cn, c, p
}
