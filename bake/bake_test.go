package bake_test

// End-to-end builds against real QEMU (TCG), the test cloud image and the test installer ISO.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/qemu"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/execx"
	"github.com/ingot-build/ingot/internal/qemuimg"
	"github.com/ingot-build/ingot/internal/testguest"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
	"github.com/ingot-build/ingot/source"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func build(t *testing.T, recipeYAML string, files map[string]string) (*bake.Result, string) {
	t.Helper()
	res, dir, err := runBuild(t, recipeYAML, files, nil)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "work")); len(entries) != 0 {
		t.Errorf("the work root still holds %v after a successful build", entries)
	}
	return res, dir
}

// syncBuffer collects a build's log lines for checks.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runBuild builds recipeYAML in a temp dir (out/, work/ and cache/ under it); tweak may change
// the options. The log goes to the test log and to opts.Logger's buffer, returned via logs.
func runBuild(t *testing.T, recipeYAML string, files map[string]string, tweak func(*bake.Options)) (*bake.Result, string, error) {
	t.Helper()
	dir := t.TempDir()
	res, err := runBuildIn(t, dir, recipeYAML, files, tweak)
	return res, dir, err
}

// runBuildIn is runBuild in dir, whose caches, image store and outputs a build before it may have
// filled. Builds take no checkpoints and make no test boots unless tweak says so: the tests of
// other things need not pay for them (checkpoint_test.go and testboot_test.go test them).
func runBuildIn(t *testing.T, dir, recipeYAML string, files map[string]string, tweak func(*bake.Options)) (*bake.Result, error) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "recipe.yaml")
	if err := os.WriteFile(path, []byte(recipeYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := recipes.Load(path, nil, nil)
	if err != nil {
		t.Fatalf("load recipe: %v", err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(tWriter{t}, logs), nil))
	fetcher, err := source.New(filepath.Join(dir, "cache"), source.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	store, err := images.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	opts := bake.Options{
		Recipe: r, OutDir: out, WorkRoot: filepath.Join(dir, "work"), Logger: log,
		Driver: qemu.New(qemu.WithLogger(log)), Sources: fetcher, Images: store, NoCache: true,
		TestBoot: recipes.TestBootNone, // testboot_test.go tests the test boots
	}
	if tweak != nil {
		tweak(&opts)
	}
	res, err := bake.Build(ctx, opts)
	if err := os.WriteFile(filepath.Join(dir, "build.log"), []byte(logs.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return res, err
}

// A build from the test cloud image with every provisioner kind; the output then boots again and
// shows the provisioning, without the build user.
func TestBuildFromCloudImage(t *testing.T) {
	t.Parallel()
	img := testguest.CloudImage(t)
	recipe := fmt.Sprintf(`name: e2e-cloud
source:
  disk: { url: "file://%s", sha256: %s }
machine: { cpus: 2, memory: 1GiB, disk: 4GiB, firmware: bios }
cloud_init:
  user_data: { write_files: [ { path: /etc/from-cloud-init, content: "seeded\n" } ] }
provision:
  - shell: echo "hello from $GREETING" > /etc/from-shell
  - shell: { script: scripts/check.sh, env: { GREETING: "it's \"quoted\" $HOME" } }
  - file: { src: files/app.conf, dst: /etc/app.conf, mode: "0640", owner: root:root }
  - file: { src: files/tree/, dst: /opt/acc/tree }
  - shell: touch /opt/left-by-builder && chown ingot:ingot /opt/left-by-builder
  - reboot: {}
  - wait_cloud_init: {}
  - shell: { inline: "cat /etc/app.conf /etc/from-cloud-init > /tmp/report", sudo: true }
  - file: { src: /tmp/report, dst: report.txt, direction: download }
outputs:
  - { format: qcow2, compress: zstd }
  - { format: raw, shrink: minimal }
  - { format: raw, compress: zstd, bmap: true }
  - { format: ova }
`, img.Image, img.SHA256)
	res, dir := build(t, recipe, map[string]string{
		"scripts/check.sh":        "#!/bin/sh\nset -e\necho \"script sees: $GREETING\"\ntest \"$(id -u)\" = 0\necho \"$GREETING\" > /etc/from-script\n",
		"files/app.conf":          "answer = 42\n",
		"files/tree/sub/data.txt": "tree data\n",
	})
	out := res.Dir
	if log, _ := os.ReadFile(filepath.Join(dir, "build.log")); !strings.Contains(string(log), `level=WARN msg="warning: /opt/left-by-builder was owned by the build user ingot`) {
		t.Errorf("the build log does not warn that generalize gave /opt/left-by-builder to root")
	}
	b, err := os.ReadFile(filepath.Join(out, "report.txt"))
	if err != nil || string(b) != "answer = 42\nseeded\n" {
		t.Errorf("downloaded report = %q, %v", b, err)
	}
	m, err := manifest.Read(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	var files []string
	for _, o := range m.Outputs {
		files = append(files, o.File)
	}
	slices.Sort(files)
	wantFiles := []string{"e2e-cloud-minimal.raw", "e2e-cloud.ova", "e2e-cloud.qcow2", "e2e-cloud.raw.bmap", "e2e-cloud.raw.zst"}
	if !slices.Equal(files, wantFiles) || len(m.Packages) < 100 || len(m.Steps) < 8 {
		t.Errorf("manifest: outputs %v (want %v), %d packages, steps %+v", files, wantFiles, len(m.Packages), m.Steps)
	}
	// Each provisioner is timed on its own, with its place in the recipe (issue 19.9): a unit of
	// its own between connect and inventory, listed in steps and again in provisioners.
	if len(m.Provisioners) != 9 || m.Provisioners[8].Step != "provision[8] file" || !strings.HasPrefix(m.Provisioners[8].At, filepath.Join(dir, "recipe.yaml")+":") {
		t.Errorf("manifest provisioners = %+v, want 9 with their recipe positions", m.Provisioners)
	} else if len(m.Steps) != 22 || !slices.Equal(m.Steps[5:14], m.Provisioners) || m.Steps[14].Step != "inventory" {
		t.Errorf("manifest steps = %+v, want the 9 provisioners between connect and inventory", m.Steps)
	}
	// The download step's file is listed with its hash, and SHA256SUMS (checked below) covers it.
	if len(m.Downloads) != 1 || m.Downloads[0].File != "report.txt" || m.Downloads[0].Size != int64(len("answer = 42\nseeded\n")) {
		t.Errorf("manifest downloads = %+v, want report.txt", m.Downloads)
	}
	sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if !strings.Contains(string(sums), "  report.txt\n") {
		t.Errorf("SHA256SUMS does not list the download: %q", sums)
	}
	if !strings.Contains(string(sums), m.Outputs[0].SHA256+"  e2e-cloud.qcow2") {
		t.Errorf("SHA256SUMS = %q", sums)
	}
	check := exec.Command("sha256sum", "-c", "--quiet", "SHA256SUMS")
	check.Dir = out
	if b, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v %s", err, b)
	}

	// The minimal raw image ends where its last partition ends; flashed onto a bigger "card" it
	// boots, and cloud-init grows root to fill it. This is also the check that the provisioning
	// is in the image and the build user is not.
	minimal := filepath.Join(out, "e2e-cloud-minimal.raw")
	mi, err := os.Stat(minimal)
	if err != nil {
		t.Fatal(err)
	}
	if mi.Size() >= 2<<30 {
		t.Errorf("the minimal raw image is %d bytes, not smaller than the 2 GiB source disk", mi.Size())
	}
	card := filepath.Join(dir, "card.raw")
	if err := execx.Run(context.Background(), "cp", "--sparse=always", minimal, card); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(card, 3<<30); err != nil {
		t.Fatal(err)
	}
	wd := filepath.Join(dir, "boot")
	if err := os.Mkdir(wd, 0o700); err != nil {
		t.Fatal(err)
	}
	access := testguest.NewSeed(t, wd, "check", nil)
	m2, err := qemu.New().Start(context.Background(), hypervisor.Spec{Name: "check", WorkDir: wd, MemoryMiB: 1024,
		Disks: []hypervisor.Disk{{Path: card, Format: "raw"}, {Path: access.Seed, Format: "raw", ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Kill(context.Background())
	c := access.Dial(t, m2.SSHAddr(), m2.Done(), 5*time.Minute)
	// The uploaded tree (issue 19): directories stay enterable, everything is root's, and an
	// ordinary user reads it; what the build user owned was given to root by generalize; and the
	// build boot made no distribution default account ("debian") to bake into every clone.
	got, err := testguest.Run(c, "cat /etc/from-shell /etc/from-script; sudo -n cat /etc/app.conf; stat -c %a:%U /etc/app.conf; "+
		"stat -c %n=%a:%U:%G /opt/acc/tree /opt/acc/tree/sub /opt/acc/tree/sub/data.txt /opt/left-by-builder; cat /opt/acc/tree/sub/data.txt; "+
		"getent passwd debian >/dev/null && echo debian-account-baked-in || echo no-debian-account; "+
		"id ingot 2>&1; ls /home; cat /etc/machine-id | wc -c; cloud-init status --wait >/dev/null; findmnt -bno SIZE /")
	if err != nil {
		t.Fatalf("check the image: %v\n%s", err, got)
	}
	for _, want := range []string{"hello from \n", "it's \"quoted\" $HOME\n", "answer = 42\n", "640:root\n", "no such user", "tester\n", "33\n",
		"/opt/acc/tree=755:root:root\n", "/opt/acc/tree/sub=755:root:root\n", "/opt/acc/tree/sub/data.txt=644:root:root\n", "tree data\n",
		"/opt/left-by-builder=644:root:root\n", "no-debian-account\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("the built image shows %q, want it to contain %q", got, want)
		}
	}
	if lines := strings.Fields(got); len(lines) == 0 || !grownPast(lines[len(lines)-1], 2<<30) {
		t.Errorf("root was not grown past 2 GiB on the 3 GiB card: %q", got)
	}
	if strings.Contains(got, "ingot\n") && !strings.Contains(got, "'ingot': no such user") {
		t.Errorf("the build user is still in the image: %q", got)
	}
	m2.Kill(context.Background())

	// The build was kept in the image store; a second recipe starts from it through a qcow2
	// backing file, and is kept as a layer on it.
	store, err := images.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Image == nil || m.Image.Name != "e2e-cloud" || m.Image.Parent == "" {
		t.Fatalf("manifest image = %+v, want e2e-cloud on a base layer", m.Image)
	}
	//
	// The child also holds the shrink bar: its provisioner writes 500 MB of random data and
	// deletes it. While it then idles, the test converts the live, untrimmed disk as a plain
	// `qemu-img convert` would; the build's own output (after fstrim) must be much smaller than
	// that, and within 5 % of the allocated data qemu-img map reports for the kept image.
	child := `name: e2e-child
source: { image: e2e-cloud }
machine: { cpus: 2, memory: 1GiB, firmware: bios }
provision:
  - shell: grep -q "hello from" /etc/from-shell && echo child > /etc/child
  - shell: |
      dd if=/dev/urandom of=/var/tmp/junk bs=1M count=500 conv=fsync status=none
      rm /var/tmp/junk && sync
      echo "ingot-test: junk deleted" >/dev/ttyS0
      sleep 25
      echo "ingot-test: resumed" >/dev/ttyS0
outputs: [ { format: qcow2 } ]
`
	childWork := filepath.Join(dir, "child-work")
	untrimmed := make(chan untrimmedConvert, 1)
	go func() {
		untrimmed <- convertWhenDeleted(childWork, filepath.Join(dir, "untrimmed.qcow2"), 20*time.Minute)
	}()
	// The name moves only when the build publishes (issue 19.5): while the child build runs,
	// "e2e-child" must never be in the store before its outputs are in their directory.
	var childOutDir atomic.Pointer[string] // set when runBuild has made the child's dirs
	early := make(chan string, 1)
	stopWatch := make(chan struct{})
	go func() {
		defer close(early)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
			outDir := childOutDir.Load()
			if _, _, err := store.Lookup("e2e-child"); err != nil || outDir == nil {
				continue
			}
			if _, err := os.Stat(filepath.Join(*outDir, "manifest.json")); err != nil {
				early <- "the image store named e2e-child before its outputs were published"
				return
			}
		}
	}()
	res2, _, err := runBuild(t, child, nil, func(o *bake.Options) {
		o.Images = store
		o.WorkRoot = childWork
		d := filepath.Join(o.OutDir, "e2e-child")
		childOutDir.Store(&d)
	})
	close(stopWatch)
	if msg, ok := <-early; ok {
		t.Error(msg)
	}
	if err != nil {
		t.Fatalf("build from the stored image: %v", err)
	}
	u := <-untrimmed
	if u.err != nil {
		t.Fatalf("convert the untrimmed disk: %v", u.err)
	}
	childOut, err := os.Stat(filepath.Join(res2.Dir, "e2e-child.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	_, childChain, err := store.Lookup("e2e-child")
	if err != nil {
		t.Fatal(err)
	}
	allocated, err := qemuimg.Allocated(context.Background(), childChain[0].Path, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("shrink bar: untrimmed convert %d MiB, output %d MiB, allocated data %d MiB (output/allocated %.3f)",
		u.size>>20, childOut.Size()>>20, allocated>>20, float64(childOut.Size())/float64(allocated))
	if d := childOut.Size() - allocated; d > allocated/20 || -d > allocated/20 {
		t.Errorf("the output is %d bytes, not within 5%% of the %d bytes of allocated data", childOut.Size(), allocated)
	}
	if u.size-childOut.Size() < 450<<20 {
		t.Errorf("the output (%d bytes) is not ~500 MB smaller than a plain convert of the untrimmed disk (%d bytes): the trim did not free the deleted data", childOut.Size(), u.size)
	}
	if im := res2.Manifest.Image; im == nil || im.Parent != m.Image.Layer {
		t.Fatalf("the child's manifest image = %+v, want a layer on %s", im, m.Image.Layer)
	}
	_, chain, err := store.Lookup("e2e-child")
	if err != nil || len(chain) != 3 {
		t.Fatalf("e2e-child's chain = %+v, %v; want child, e2e-cloud, base", chain, err)
	}
	info, err := execx.Output(context.Background(), "qemu-img", "info", "--output=json", chain[0].Path)
	if err != nil || !strings.Contains(string(info), chain[1].Path) {
		t.Errorf("the child layer does not back on e2e-cloud's layer %s: %v %s", chain[1].Path, err, info)
	}
}

type untrimmedConvert struct {
	size int64
	err  error
}

// convertWhenDeleted waits for the child build's console to say its junk is deleted, then
// converts the live disk as a plain `qemu-img convert` would (-U: QEMU holds its lock), while the
// guest idles; the guest must not have resumed before the convert ended, or the figure is not the
// untrimmed disk's.
func convertWhenDeleted(workRoot, dst string, timeout time.Duration) untrimmedConvert {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		consoles, _ := filepath.Glob(filepath.Join(workRoot, "*", "console.log"))
		for _, console := range consoles {
			if b, _ := os.ReadFile(console); !bytes.Contains(b, []byte("ingot-test: junk deleted")) {
				continue
			}
			src := filepath.Join(filepath.Dir(console), "disk.qcow2")
			if err := execx.Run(context.Background(), "qemu-img", "convert", "-U", "-O", "qcow2", src, dst); err != nil {
				return untrimmedConvert{err: err}
			}
			if b, _ := os.ReadFile(console); bytes.Contains(b, []byte("ingot-test: resumed")) {
				return untrimmedConvert{err: errors.New("the guest resumed before the convert of its untrimmed disk ended")}
			}
			fi, err := os.Stat(dst)
			if err != nil {
				return untrimmedConvert{err: err}
			}
			return untrimmedConvert{size: fi.Size()}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return untrimmedConvert{err: errors.New("the child build never said its junk was deleted")}
}

// A build from the test installer ISO: kernel and initrd taken from the ISO, "autoinstall" added,
// the installer's power-off awaited, the installed system booted and provisioned.
func TestBuildFromInstallerISO(t *testing.T) {
	t.Parallel()
	iso := testguest.InstallerISO(t)
	recipe := fmt.Sprintf(`name: e2e-iso
source:
  iso:
    url: "file://%s"
    sha256: %s
    kernel: /casper/vmlinuz
    initrd: /casper/initrd
    append: "console=ttyS0,115200n8 autoinstall"
    install_timeout: 10m
machine: { cpus: 2, memory: 1GiB, disk: 4GiB, firmware: bios }
cloud_init:
  user_data:
    autoinstall:
      version: 1
      shutdown: poweroff
      identity: { hostname: from-iso }
provision:
  - shell: hostname > /etc/installed-by-ingot
outputs:
  - { format: qcow2 }
`, iso.ISO, iso.SHA256)
	res, _ := build(t, recipe, nil)
	if _, err := os.Stat(filepath.Join(res.Dir, "e2e-iso.qcow2")); err != nil {
		t.Fatal(err)
	}
	info, err := execx.Output(context.Background(), "qemu-img", "info", filepath.Join(res.Dir, "e2e-iso.qcow2"))
	if err != nil || strings.Contains(string(info), "backing file") {
		t.Errorf("the output must stand alone: %v %s", err, info)
	}
}

// A guest whose cloud-init fails before SSH comes up fails the build at once, naming the failed
// module with the console tail; --keep-on-failure keeps the work dir and says how to boot it; no
// QEMU and no output are left.
func TestCloudInitErrorStopsTheWaitForSSH(t *testing.T) {
	t.Parallel()
	img := testguest.CloudImage(t)
	recipe := fmt.Sprintf(`name: e2e-broken
source:
  disk: { url: "file://%s", sha256: %s }
machine: { cpus: 1, memory: 1GiB, firmware: bios }
cloud_init:
  user_data: { bootcmd: [ "echo bootcmd-says-no; exit 3" ] }
ssh: { timeout: 30m }
`, img.Image, img.SHA256)
	_, dir, err := runBuild(t, recipe, nil, func(o *bake.Options) { o.KeepOnFailure = true })
	var se *bake.StepError
	if !errors.As(err, &se) || se.Step != "connect" {
		t.Fatalf("build error = %v, want a failure in step connect", err)
	}
	for _, want := range []string{"wait for SSH as ingot", "the cloud-init module bootcmd failed", "the serial console ends with"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "e2e-broken")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed build published something: %v", err)
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "work", "e2e-broken-*"))
	if len(kept) != 1 {
		t.Fatalf("kept work dirs = %v, want one", kept)
	}
	for _, f := range []string{"disk.qcow2", "seed.img", "console.log"} {
		if _, err := os.Stat(filepath.Join(kept[0], f)); err != nil {
			t.Errorf("the kept work dir lacks %s: %v", f, err)
		}
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "build.log"))
	if !strings.Contains(string(logs), "kept the work dir") || !strings.Contains(string(logs), "qemu-system-x86_64 -machine q35") {
		t.Errorf("the log does not say where the work dir is and how to boot it:\n%s", logs)
	}
	if out, err := exec.Command("pgrep", "-f", kept[0]).Output(); err == nil {
		t.Errorf("QEMU still runs on the kept work dir: %s", out)
	}
}

func grownPast(bytes string, limit int64) bool {
	n, err := strconv.ParseInt(bytes, 10, 64)
	return err == nil && n > limit
}
