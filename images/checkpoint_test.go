package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ingot-build/ingot/internal/digest"
)

// ckptFixture is a store with a fake clock and a base layer that checkpoints back on.
type ckptFixture struct {
	t     *testing.T
	s     *Store
	base  Layer
	clock time.Time
}

func newCkptFixture(t *testing.T) *ckptFixture {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	f := &ckptFixture{t: t, s: s, clock: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s.now = func() time.Time { return f.clock }
	f.base = addLayer(t, s, nil, Layer{}, "11")
	// The base stays named, as a build's base stays held; checkpoints do not own it.
	if _, err := s.Tag(context.Background(), Image{Name: "base", Layer: f.base.Digest}); err != nil {
		t.Fatal(err)
	}
	return f
}

func key(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// inputs writes a checkpoint's files and its disk layer (an overlay on the base whose first
// 64 KiB are the byte data) into a checkpoint temp dir, as a build would, and returns them.
func (f *ckptFixture) inputs(state, data string) (files map[string]string, layerTmp string) {
	t := f.t
	t.Helper()
	dir, done, err := f.s.CheckpointTempDir(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := done(); err != nil {
			t.Error(err)
		}
	})
	files = map[string]string{}
	for name, content := range map[string]string{
		"state.zst":        state,
		"vars.fd":          "uefi vars",
		"id_ed25519":       "client key",
		"ssh_host_ed25519": "host key",
		"seed.iso":         "cidata",
	} {
		files[name] = filepath.Join(dir, name)
		if err := os.WriteFile(files[name], []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	layerTmp = filepath.Join(dir, "disk.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", f.base.Path, "-F", f.base.Format, layerTmp, "64M")
	if out, err := exec.Command("qemu-io", "-c", "write -P 0x"+data+" 0 64k", layerTmp).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	return files, layerTmp
}

// put stores a checkpoint for recipe and step, keyed by both, at the fixture's clock.
func (f *ckptFixture) put(recipe, step, state, data string) Checkpoint {
	f.t.Helper()
	files, layer := f.inputs(state, data)
	c, err := f.s.PutCheckpoint(context.Background(), Checkpoint{Key: key(recipe + "/" + step), Recipe: recipe, Step: step}, files, layer, f.base.Digest)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func TestCheckpointRoundTripAndModes(t *testing.T) {
	ctx := context.Background()
	f := newCkptFixture(t)
	files, layerTmp := f.inputs("ram ram ram", "22")
	c, err := f.s.PutCheckpoint(ctx, Checkpoint{Key: key("web/booted"), Recipe: "web", Step: "booted"}, files, layerTmp, f.base.Digest)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range files {
		if exists(p) {
			t.Errorf("%s was not moved in: %s is still there", name, p)
		}
	}
	if exists(layerTmp) {
		t.Error("the layer was not moved in")
	}

	// What was stored: each file by its sha256, the layer on the base, the sizes added up.
	l, err := f.s.layer(c.Layer)
	if err != nil || l.Parent != f.base.Digest {
		t.Fatalf("the checkpoint's layer %+v (%v); want an overlay on the base %s", l, err, f.base.Digest)
	}
	size := l.Size
	for name, want := range map[string]string{"state.zst": "ram ram ram", "vars.fd": "uefi vars", "id_ed25519": "client key", "ssh_host_ed25519": "host key", "seed.iso": "cidata"} {
		sum := sha256.Sum256([]byte(want))
		if got := c.Files[name]; got.SHA256 != hex.EncodeToString(sum[:]) || got.Size != int64(len(want)) {
			t.Errorf("Files[%s] = %+v; want the sum of %q", name, got, want)
		}
		if b, err := os.ReadFile(filepath.Join(c.Dir, name)); err != nil || string(b) != want {
			t.Errorf("%s in %s = %q, %v", name, c.Dir, b, err)
		}
		size += int64(len(want))
	}
	if c.Size != size || c.Recipe != "web" || c.Step != "booted" || !c.Created.Equal(f.clock) || !c.Used.Equal(f.clock) {
		t.Errorf("PutCheckpoint = %+v; want size %d, created and used %v", c, size, f.clock)
	}

	// Private: 0700 dirs, 0600 files, the record too.
	modes := map[string]fs.FileMode{f.s.ckptDir(): 0o700 | fs.ModeDir, c.Dir: 0o700 | fs.ModeDir, f.s.ckptMeta(c.Key): 0o600}
	for name := range c.Files {
		modes[filepath.Join(c.Dir, name)] = 0o600
	}
	for p, want := range modes {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Errorf("mode of %s = %v (%v); want %v", p, fi.Mode(), err, want)
		}
	}

	// Restored an hour later: the same checkpoint, now used then.
	f.clock = f.clock.Add(time.Hour)
	got, err := f.s.GetCheckpoint(ctx, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Layer != c.Layer || got.Dir != c.Dir || got.Size != c.Size || !got.Created.Equal(c.Created) || !got.Used.Equal(f.clock) {
		t.Errorf("GetCheckpoint = %+v; want %+v used at %v", got, c, f.clock)
	}
	list, err := f.s.Checkpoints()
	if err != nil || len(list) != 1 || list[0].Key != c.Key || !list[0].Used.Equal(f.clock) {
		t.Errorf("Checkpoints = %+v, %v", list, err)
	}

	// A second put of a stored key is a no-op that returns it, and consumes its inputs.
	files2, layer2 := f.inputs("other ram", "33")
	again, err := f.s.PutCheckpoint(ctx, Checkpoint{Key: c.Key, Recipe: "web", Step: "booted"}, files2, layer2, f.base.Digest)
	if err != nil || again.Layer != c.Layer || !again.Created.Equal(c.Created) || again.Files["state.zst"] != c.Files["state.zst"] {
		t.Errorf("a second put = %+v, %v; want the stored %+v", again, err, c)
	}
	if exists(files2["state.zst"]) || exists(layer2) {
		t.Error("a no-op put left its inputs")
	}

	if _, err := f.s.GetCheckpoint(ctx, key("nothing")); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("GetCheckpoint of an absent key: %v; want ErrNoCheckpoint", err)
	}
	for _, bad := range []string{"", "../x", strings.ToUpper(c.Key)} {
		if _, err := f.s.GetCheckpoint(ctx, bad); err == nil || errors.Is(err, ErrNoCheckpoint) {
			t.Errorf("GetCheckpoint(%q) = %v; want a bad-key error", bad, err)
		}
	}
	if _, err := f.s.PutCheckpoint(ctx, Checkpoint{Key: key("x")}, map[string]string{"../escape": files2["vars.fd"]}, layer2, f.base.Digest); err == nil {
		t.Error("a file name with a path in it was accepted")
	}
}

// A file on another file system (rename fails with EXDEV) is copied in, private and hashed.
func TestCheckpointFilesFromElsewhere(t *testing.T) {
	f := newCkptFixture(t)
	_, layerTmp := f.inputs("", "22")
	other, err := os.MkdirTemp("/dev/shm", "ingot-test-") // its own tmpfs on Linux
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	var a, b syscall.Stat_t
	if err := errors.Join(syscall.Stat(other, &a), syscall.Stat(f.s.Dir(), &b)); err != nil || a.Dev == b.Dev {
		t.Fatalf("need /dev/shm on another file system than %s (%v)", f.s.Dir(), err)
	}
	src := filepath.Join(other, "state.zst")
	if err := os.WriteFile(src, []byte("ram"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := f.s.PutCheckpoint(context.Background(), Checkpoint{Key: key("x")}, map[string]string{"state.zst": src}, layerTmp, f.base.Digest)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(c.Dir, "state.zst")
	if fi, err := os.Stat(p); err != nil || fi.Mode() != 0o600 || exists(src) {
		t.Errorf("state.zst: %v, %v; source left: %v", fi.Mode(), err, exists(src))
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "ram" || c.Files["state.zst"].Size != 3 {
		t.Errorf("state.zst holds %q (%v), recorded as %+v", b, err, c.Files["state.zst"])
	}
}

// A checkpoint whose files or layer no longer match their sums is refused, saying what is
// wrong, and removed with its layer so no build tries it again.
func TestCorruptCheckpointIsDetectedAndRemoved(t *testing.T) {
	for _, tt := range []struct {
		name    string
		corrupt func(t *testing.T, s *Store, c Checkpoint)
		want    string
	}{
		{"truncated state", func(t *testing.T, s *Store, c Checkpoint) {
			if err := os.Truncate(filepath.Join(c.Dir, "state.zst"), 4); err != nil {
				t.Fatal(err)
			}
		}, "state.zst: 4 bytes, want 11"},
		{"a flipped byte", func(t *testing.T, s *Store, c Checkpoint) {
			writeAt(t, filepath.Join(c.Dir, "vars.fd"), 0, "U")
		}, "vars.fd: sha256"},
		{"a missing key", func(t *testing.T, s *Store, c Checkpoint) {
			if err := os.Remove(filepath.Join(c.Dir, "id_ed25519")); err != nil {
				t.Fatal(err)
			}
		}, "id_ed25519"},
		{"a changed disk layer", func(t *testing.T, s *Store, c Checkpoint) {
			p := s.layerPath(c.Layer)
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			writeAt(t, p, 1<<16, "x")
		}, "its disk layer LAYER: sha256"},
		{"a lost disk layer", func(t *testing.T, s *Store, c Checkpoint) {
			if err := os.Remove(s.layerPath(c.Layer)); err != nil {
				t.Fatal(err)
			}
		}, "its disk layer"},
		{"a garbled record", func(t *testing.T, s *Store, c Checkpoint) {
			writeAt(t, s.ckptMeta(c.Key), 0, "#")
		}, "its record"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newCkptFixture(t)
			c := f.put("web", "booted", "ram ram ram", "22")
			tt.corrupt(t, f.s, c)
			want := strings.ReplaceAll(tt.want, "LAYER", c.Layer[:12])
			_, err := f.s.GetCheckpoint(ctx, c.Key)
			if !errors.Is(err, ErrCorruptCheckpoint) || !strings.Contains(err.Error(), want) {
				t.Fatalf("GetCheckpoint = %v; want ErrCorruptCheckpoint saying %q", err, want)
			}
			if _, err := f.s.GetCheckpoint(ctx, c.Key); !errors.Is(err, ErrNoCheckpoint) {
				t.Errorf("the second GetCheckpoint = %v; want ErrNoCheckpoint (removed)", err)
			}
			if exists(c.Dir) || exists(f.s.ckptMeta(c.Key)) || exists(f.s.layerPath(c.Layer)) {
				t.Error("the corrupt checkpoint or its layer is still stored")
			}
			if !exists(f.base.Path) {
				t.Error("the base layer, still named, was collected")
			}
		})
	}
}

func writeAt(t *testing.T, path string, off int64, s string) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

// Restoring while the context ends is not corruption: the checkpoint stays.
func TestGetCheckpointCancelledKeepsIt(t *testing.T) {
	f := newCkptFixture(t)
	c := f.put("web", "booted", "ram", "22")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Hashing stops with the context: that says nothing about the files.
	if bad, err := f.s.verify(ctx, c); bad != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("verify with an ended context = %v, %v; want no verdict and the context's error", bad, err)
	}
	if _, err := f.s.GetCheckpoint(ctx, c.Key); !errors.Is(err, context.Canceled) || errors.Is(err, ErrCorruptCheckpoint) {
		t.Fatalf("GetCheckpoint with an ended context = %v; want the context's error", err)
	}
	if _, err := f.s.GetCheckpoint(context.Background(), c.Key); err != nil {
		t.Fatal(err)
	}
}

// writerEnv makes the test binary the writer that TestKilledWriterLeavesNothing kills.
const writerEnv = "INGOT_TEST_CHECKPOINT_WRITER"

func TestMain(m *testing.M) {
	if store := os.Getenv(writerEnv); store != "" {
		os.Exit(checkpointWriter(store))
	}
	os.Exit(m.Run())
}

// checkpointWriter starts writing a checkpoint into the store, says where, and waits to be
// killed.
func checkpointWriter(store string) int {
	s, err := Open(store)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, _, err := s.CheckpointTempDir(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(dir, "state.zst"), []byte("half a RAM ima"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(dir)
	time.Sleep(time.Minute) // killed before this ends
	fmt.Fprintln(os.Stderr, "not killed")
	return 1
}

// A writer killed (SIGKILL, a real process) in the middle of a checkpoint leaves nothing that is
// restored or listed; its staging dir stays while it lives and is swept once it is dead. A
// writer killed between publishing the files and the record leaves a files dir that is never
// returned either, is replaced by the next put of its key and swept otherwise.
func TestKilledWriterLeavesNothing(t *testing.T) {
	ctx := context.Background()
	f := newCkptFixture(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), writerEnv+"="+f.s.Dir())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var staging string
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if line := sc.Text(); strings.HasPrefix(line, f.s.ckptDir()) {
			staging = line
			break
		}
	}
	if staging == "" {
		t.Fatal("the writer did not start")
	}

	// Alive: another writer's sweep keeps its dir.
	live := f.put("web", "booted", "ram", "22")
	if !exists(staging) {
		t.Fatal("a live writer's staging dir was swept")
	}

	// Killed mid-write; and another writer killed after renaming its files into place but
	// before writing the record.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	orphan := f.s.ckptFiles(key("web/provision[1] shell"))
	if err := os.Mkdir(orphan, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(orphan, "state.zst"), []byte("ram"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.GetCheckpoint(ctx, key("web/provision[1] shell")); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("GetCheckpoint of a checkpoint without its record = %v; want ErrNoCheckpoint", err)
	}
	if list, err := f.s.Checkpoints(); err != nil || len(list) != 1 || list[0].Key != live.Key {
		t.Errorf("Checkpoints = %+v, %v; want only %s", list, err, live.Key)
	}

	// The next put of the orphan's key replaces it; the dead writer's dir is swept.
	c := f.put("web", "provision[1] shell", "new ram", "33")
	if b, err := os.ReadFile(filepath.Join(c.Dir, "state.zst")); err != nil || string(b) != "new ram" {
		t.Errorf("the put over an orphaned files dir stored %q, %v", b, err)
	}
	if exists(staging) {
		t.Error("the killed writer's staging dir was not swept")
	}

	// An orphan of a key nobody puts again is swept by a collect.
	orphan = f.s.ckptFiles(key("other"))
	if err := os.Mkdir(orphan, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(orphan) {
		t.Error("a files dir without a record survived a collect")
	}
	for _, c := range []Checkpoint{live, c} {
		if _, err := f.s.GetCheckpoint(ctx, c.Key); err != nil {
			t.Errorf("a complete checkpoint after the sweeps: %v", err)
		}
	}
}

// A restoring build keeps its checkpoint from prunes until its hold ends; a checkpoint pruned
// between GetCheckpoint and KeepCheckpoint is reported as gone, not half-kept.
func TestHoldKeepsARestoredCheckpoint(t *testing.T) {
	ctx := context.Background()
	f := newCkptFixture(t)
	a := f.put("web", "booted", "ram a", "22")
	b := f.put("web", "provision[1] shell", "ram b", "33")
	h, err := f.s.NewHold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.s.GetCheckpoint(ctx, a.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.KeepCheckpoint(ctx, got); err != nil {
		t.Fatal(err)
	}
	gotB, err := f.s.GetCheckpoint(ctx, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	removed, err := f.s.PruneCheckpoints(ctx, PruneCheckpoints{All: true})
	if err != nil || len(removed) != 1 || removed[0].Key != b.Key {
		t.Fatalf("prune during the build removed %+v (%v); want only %s", removed, err, b.Key[:12])
	}
	if err := h.KeepCheckpoint(ctx, gotB); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("keeping a pruned checkpoint: %v; want ErrNoCheckpoint", err)
	}
	if p, err := f.s.LayerFile(a.Layer); err != nil || !exists(p) {
		t.Errorf("the kept checkpoint's layer: %s, %v", p, err)
	}
	if _, err := f.s.GetCheckpoint(ctx, a.Key); err != nil {
		t.Errorf("the kept checkpoint: %v", err)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if removed, err := f.s.PruneCheckpoints(ctx, PruneCheckpoints{All: true}); err != nil || len(removed) != 1 {
		t.Fatalf("prune after the build removed %+v (%v); want %s", removed, err, a.Key[:12])
	}
	if _, err := f.s.LayerFile(a.Layer); err == nil {
		t.Error("the layer of a pruned checkpoint is still stored")
	}
}

// A checkpoint that hashes right but does not restore is removed on request, with its layer,
// even while held; removing it again is not an error.
func TestRemoveCheckpoint(t *testing.T) {
	ctx := context.Background()
	f := newCkptFixture(t)
	c := f.put("web", "booted", "ram", "22")
	h, err := f.s.NewHold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.KeepCheckpoint(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := f.s.RemoveCheckpoint(ctx, c.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.GetCheckpoint(ctx, c.Key); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("GetCheckpoint after RemoveCheckpoint: %v; want ErrNoCheckpoint", err)
	}
	if exists(c.Dir) {
		t.Error("its files are still there")
	}
	if !exists(f.s.layerPath(c.Layer)) {
		t.Error("its layer went while a build held it")
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if err := f.s.RemoveCheckpoint(ctx, c.Key); err != nil {
		t.Errorf("removing it again: %v", err)
	}
	if exists(f.s.layerPath(c.Layer)) {
		t.Error("its layer survived the hold's end and a collect")
	}
}

// Builds that put and restore the same key at once: all puts succeed and return the one that
// won, a restore sees that one whole or none, never a mix, and the losers' layers are freed.
func TestConcurrentPutOfOneKey(t *testing.T) {
	ctx := context.Background()
	f := newCkptFixture(t)
	const writers = 4
	type input struct {
		files map[string]string
		layer string
	}
	var ins []input
	for i := range writers {
		files, layer := f.inputs(fmt.Sprintf("ram of writer %d", i), fmt.Sprintf("%d%d", i+2, i+2))
		ins = append(ins, input{files, layer})
	}
	k := key("web/booted")
	var wg sync.WaitGroup
	results := make([]Checkpoint, writers)
	errs := make([]error, writers)
	stop := make(chan struct{})
	getErrs := make(chan error, 1)
	go func() { // a restorer that keeps trying meanwhile
		defer close(getErrs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := f.s.GetCheckpoint(ctx, k); err != nil && !errors.Is(err, ErrNoCheckpoint) {
				getErrs <- err
				return
			}
		}
	}()
	for i, in := range ins {
		wg.Go(func() {
			results[i], errs[i] = f.s.PutCheckpoint(ctx, Checkpoint{Key: k, Recipe: "web", Step: "booted"}, in.files, in.layer, f.base.Digest)
		})
	}
	wg.Wait()
	close(stop)
	if err := <-getErrs; err != nil {
		t.Errorf("a restore during the puts: %v", err)
	}
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("put %d: %v", i, errs[i])
		}
		if results[i].Layer != results[0].Layer || !results[i].Created.Equal(results[0].Created) || results[i].Files["state.zst"] != results[0].Files["state.zst"] {
			t.Errorf("put %d returned %+v; put 0 returned %+v", i, results[i], results[0])
		}
	}
	c, err := f.s.GetCheckpoint(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.Dir, "state.zst"))
	if err != nil || !bytes.HasPrefix(b, []byte("ram of writer ")) {
		t.Fatalf("the stored state = %q, %v", b, err)
	}
	if _, err := f.s.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	layers, _ := filepath.Glob(filepath.Join(f.s.layerDir(), "*.json"))
	if len(layers) != 2 { // the base and the winner's
		t.Errorf("layers after a collect: %v; want the base's and the winner's", layers)
	}
	if left, _ := filepath.Glob(filepath.Join(f.s.ckptDir(), ".tmp-*")); len(left) != writers {
		// The fixture's inputs dirs are still open (removed at cleanup); no staging dir is left.
		t.Errorf("staging dirs left: %v", left)
	}
}

func TestPruneCheckpoints(t *testing.T) {
	// Stored an hour apart, in this order: so "web/1" is the least recently used.
	stored := []string{"web/1", "web/2", "db/1", "web/3", "db/2"}
	for _, tt := range []struct {
		name string
		p    func(sizes map[string]int64) PruneCheckpoints
		held string // restored by a build that still runs
		want []string
	}{
		{"nothing", func(map[string]int64) PruneCheckpoints { return PruneCheckpoints{} }, "", nil},
		{"older than", func(map[string]int64) PruneCheckpoints { return PruneCheckpoints{OlderThan: 150 * time.Minute} }, "", []string{"web/1", "web/2"}},
		{"keep last per recipe", func(map[string]int64) PruneCheckpoints { return PruneCheckpoints{KeepLast: 1} }, "", []string{"web/1", "web/2", "db/1"}},
		{"max size, least recently used first", func(sz map[string]int64) PruneCheckpoints {
			return PruneCheckpoints{MaxSize: sz["web/3"] + sz["db/2"] + 1}
		}, "", []string{"web/1", "web/2", "db/1"}},
		{"max size after keep last", func(sz map[string]int64) PruneCheckpoints {
			return PruneCheckpoints{KeepLast: 2, MaxSize: sz["db/2"]}
		}, "", []string{"web/1", "web/2", "db/1", "web/3"}},
		{"all", func(map[string]int64) PruneCheckpoints { return PruneCheckpoints{All: true} }, "", stored},
		{"all but the one a build holds", func(map[string]int64) PruneCheckpoints { return PruneCheckpoints{All: true} }, "web/1", []string{"web/2", "db/1", "web/3", "db/2"}},
		{"max size skips the held one", func(sz map[string]int64) PruneCheckpoints {
			return PruneCheckpoints{MaxSize: sz["web/1"] + sz["db/2"]}
		}, "web/1", []string{"web/2", "db/1", "web/3"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newCkptFixture(t)
			sizes := map[string]int64{}
			cps := map[string]Checkpoint{}
			for i, name := range stored {
				recipe, step, _ := strings.Cut(name, "/")
				cps[name] = f.put(recipe, step, strings.Repeat("r", 1000*(i+1)), fmt.Sprintf("%d%d", i+2, i+2))
				sizes[name] = cps[name].Size
				f.clock = f.clock.Add(time.Hour)
			}
			if tt.held != "" {
				h, err := f.s.NewHold(ctx)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = h.Release() })
				f.clock = f.clock.Add(-time.Hour) // restored at the time of the last put: still the LRU order above
				c, err := f.s.GetCheckpoint(ctx, cps[tt.held].Key)
				if err != nil {
					t.Fatal(err)
				}
				if err := h.KeepCheckpoint(ctx, c); err != nil {
					t.Fatal(err)
				}
				if err := f.s.writeCheckpoint(cps[tt.held]); err != nil { // keep its old Used
					t.Fatal(err)
				}
				f.clock = f.clock.Add(time.Hour)
			}
			f.clock = f.clock.Add(-time.Hour) // now: when the last was stored
			removed, err := f.s.PruneCheckpoints(ctx, tt.p(sizes))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range removed {
				got = append(got, c.Recipe+"/"+c.Step)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("removed %v; want %v", got, tt.want)
			}
			list, err := f.s.Checkpoints()
			if err != nil || len(list) != len(stored)-len(tt.want) {
				t.Errorf("left %d checkpoints (%v); want %d", len(list), err, len(stored)-len(tt.want))
			}
			for _, name := range tt.want {
				if exists(cps[name].Dir) || exists(f.s.layerPath(cps[name].Layer)) {
					t.Errorf("%s: its files or its layer are still stored", name)
				}
			}
		})
	}
}

// A checkpoint's layer (and its base) survive collections while the checkpoint is stored; when
// it is pruned, the layer goes unless a name needs it.
func TestCheckpointLayerLivesWithItsCheckpoint(t *testing.T) {
	ctx := context.Background()
	f := newCkptFixture(t)
	a := f.put("web", "booted", "ram a", "22")
	b := f.put("web", "provision[1] shell", "ram b", "33")
	if _, err := f.s.Remove(ctx, "base"); err != nil { // nothing names the base now
		t.Fatal(err)
	}
	if freed, err := f.s.Tag(ctx, Image{Name: "kept", Layer: b.Layer}); err != nil || len(freed) != 0 {
		t.Fatalf("a collect with checkpoints stored freed %v (%v); want nothing", freed, err)
	}
	for _, p := range []string{f.s.layerPath(a.Layer), f.s.layerPath(b.Layer), f.base.Path} {
		if !exists(p) {
			t.Errorf("%s was collected while a checkpoint needs it", p)
		}
	}
	if _, err := f.s.PruneCheckpoints(ctx, PruneCheckpoints{All: true}); err != nil {
		t.Fatal(err)
	}
	if exists(f.s.layerPath(a.Layer)) {
		t.Error("a pruned checkpoint's layer was not collected")
	}
	if !exists(f.s.layerPath(b.Layer)) || !exists(f.base.Path) {
		t.Error("a named layer (or its base) was collected with the checkpoint that shared it")
	}
	if d, _, err := digest.File(ctx, f.s.layerPath(b.Layer), nil); err != nil || d != b.Layer {
		t.Errorf("the named layer: %s, %v", d, err)
	}
}
