package bake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/ctxio"
	"github.com/ingot-build/ingot/internal/qemuimg"
)

// checkpointFormat is in every checkpoint key: bump it when what a checkpoint holds, or how a
// build restores one, changes, so that no build restores a checkpoint it would misread.
const checkpointFormat = "ingot-checkpoint-1"

// OutputVersion is in every build's inputs hash (manifest recipe.inputs_sha256): bump it when
// ingot changes what it publishes from the same inputs (generalize, a format's options), so that
// such a build is not "up to date" with outputs an older ingot made. 2: the manifest's and the
// SBOM's licenses, which a "License:<TAB>" line had lost.
const OutputVersion = "2"

// Names of the files of a checkpoint, besides its disk layer.
const (
	ckState = "state.zst" // RAM and device state, from the driver's Checkpoint
	ckKeys  = "keys.json" // the client key and the pinned host key (communicator.MarshalKeys)
	ckSeed  = "seed.img"  // the seed the guest holds (its instance-id and host key)
	ckInfo  = "info.json" // checkpointInfo
)

// checkpointInfo is what a checkpoint says of the build that took it.
type checkpointInfo struct {
	// Seconds is how long the build had worked when it took the checkpoint, counting what it
	// had restored: the time a build that restores it skips.
	Seconds float64 `json:"seconds"`
}

// checkpoints is what a build knows of its checkpoints: their keys, the one it resumed from, and
// the saves still being written.
type checkpoints struct {
	// keys[0] is the key of "booted" (SSH up, cloud-init done), keys[i+1] the key after
	// provision[i]; "" where nothing is cached: from the first step that says cache: false on.
	keys []string
	// resumed is the checkpoint the build restored, and at its index in keys; at is -1 when the
	// build booted.
	resumed images.Checkpoint
	at      int
	// saving are the checkpoints written in the background; their errors only warn.
	saving sync.WaitGroup
	// taken is the key of the checkpoint the running unit took, for its timing.
	taken string
	// skipped is the work the resumed checkpoint holds (checkpointInfo.Seconds).
	skipped float64
}

// canCheckpoint says whether this build takes and restores checkpoints: it has an image store,
// was not told --no-cache, and its driver restores machines (the QEMU driver; the libvirt driver
// does not, and the build says so once).
func (b *build) canCheckpoint() bool {
	if b.opts.Images == nil || b.opts.NoCache {
		return false
	}
	if r, ok := b.opts.Driver.(hypervisor.Restorer); !ok || !r.CanRestore() {
		b.log.Info("checkpoints: this hypervisor driver cannot restore a machine; building without them", "driver", b.opts.Tool.Driver)
		return false
	}
	return true
}

// checkpointKeys computes the keys of the build's checkpoints: "booted" hashes the format, the
// base the disk starts from, what the guest sees before the first step (recipes.BootCanonical),
// the QEMU version, the accelerator and the firmware; each step's key hashes the previous key
// and the step's canonical form, with the bytes of the files it reads.
func (b *build) checkpointKeys() ([]string, error) {
	boot, err := b.r.BootCanonical()
	if err != nil {
		return nil, err
	}
	base := b.baseLayer
	if base == "" {
		base = b.baseSum
	}
	keys := []string{digestOf([]byte(checkpointFormat), []byte(base), boot, []byte(b.opts.Tool.QEMUVersion), []byte(b.spec("build").Accel), []byte(b.fwKind))}
	cached := true
	for i := range b.r.Provision {
		s := &b.r.Provision[i]
		// A step handed a secret leaves it in the machine's memory, and maybe on its disk: no
		// checkpoint after it holds either.
		if s.NoCache || s.UsesSecrets() {
			cached = false
		}
		if !cached {
			keys = append(keys, "")
			continue
		}
		c, err := s.Canonical()
		if err != nil {
			return nil, err
		}
		keys = append(keys, digestOf([]byte(keys[i]), c))
	}
	return keys, nil
}

// digestOf is the hex sha256 of parts, each length-prefixed so that no two lists of parts hash
// alike: the one way a checkpoint key and a build's inputs hash are made.
func digestOf(parts ...[]byte) string {
	h := sha256.New()
	for _, part := range parts {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// dropResume forgets the checkpoint prepare chose and removes the disk and seed it made from
// it, so that the build can prepare afresh and boot.
func (b *build) dropResume() error {
	b.ck.at, b.ck.resumed = -1, images.Checkpoint{}
	for _, f := range []string{b.diskPath, b.seedPath} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// findCheckpoint sets b.ck.resumed to the checkpoint of the longest cached prefix of the build,
// trying the latest first; a corrupt one is skipped with a warning (the store removed it) and
// the one before it tried.
func (b *build) findCheckpoint(ctx context.Context) {
	b.ck.at = -1
	for i := len(b.ck.keys) - 1; i >= 0; i-- {
		key := b.ck.keys[i]
		if key == "" {
			continue
		}
		c, err := b.opts.Images.GetCheckpoint(ctx, key)
		switch {
		case err == nil:
			b.ck.resumed, b.ck.at = c, i
			return
		case errors.Is(err, images.ErrNoCheckpoint):
		default:
			b.log.Warn("checkpoint unusable; trying the one before it", "after", b.checkpointStep(i), "key", short(key), "err", err)
		}
	}
}

// checkpointStep names what checkpoint i was taken after: "booted" or "provision[N] KIND".
func (b *build) checkpointStep(i int) string {
	if i == 0 {
		return "booted"
	}
	return provisionName(i-1, &b.r.Provision[i-1])
}

// restored says whether unit u's result comes from the checkpoint the build resumed from.
func (b *build) restored(u unit) bool {
	if b.ck.at < 0 {
		return false
	}
	switch {
	case u.name == "install":
		return true
	case u.recipe != nil:
		return u.index+1 <= b.ck.at
	}
	return false
}

// prepareResume makes the build disk an overlay on the checkpoint's layer and takes the keys and
// seed the restored guest holds.
func (b *build) prepareResume(ctx context.Context) error {
	c := b.ck.resumed
	layer, err := b.opts.Images.LayerFile(c.Layer)
	if err != nil {
		return err
	}
	h, err := b.imageHold(ctx)
	if err != nil {
		return err
	}
	if err := h.KeepCheckpoint(ctx, c); err != nil {
		return err
	}
	if err := b.waits.track(func() error { return qemuimg.CreateOverlay(ctx, b.diskPath, layer, "qcow2", b.diskSize) }); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(c.Dir, ckKeys))
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", short(c.Key), err)
	}
	if b.keys, err = communicator.UnmarshalKeys(data); err != nil {
		return fmt.Errorf("checkpoint %s: %w", short(c.Key), err)
	}
	if data, err := os.ReadFile(filepath.Join(c.Dir, ckInfo)); err == nil {
		var info checkpointInfo
		if json.Unmarshal(data, &info) == nil {
			b.ck.skipped = info.Seconds
		}
	}
	return copyPrivate(ctx, filepath.Join(c.Dir, ckSeed), b.seedPath)
}

// restore starts the build machine from the checkpoint prepare found.
func (b *build) restore(ctx context.Context) error {
	c := b.ck.resumed
	b.log.Info(fmt.Sprintf("resuming after %s from checkpoint %s, skipping %s", c.Step, short(c.Key), time.Duration(b.ck.skipped*float64(time.Second)).Round(time.Second)),
		"checkpoint", c.Key)
	spec := b.spec("build")
	spec.Incoming = filepath.Join(c.Dir, ckState)
	return b.start(ctx, spec)
}

// saveCheckpoint checkpoints the running machine as checkpoint i: the driver saves RAM and
// devices while the guest is paused, the paused disk overlay is copied, the guest goes on, and
// the copy, the state, the keys and the seed go into the store in the background. A checkpoint
// that cannot be taken only warns: the build goes on without it.
func (b *build) saveCheckpoint(ctx context.Context, i int) {
	if b.ck.keys == nil || i >= len(b.ck.keys) || b.ck.keys[i] == "" {
		return
	}
	key, step := b.ck.keys[i], b.checkpointStep(i)
	cp, ok := b.machine.(hypervisor.Checkpointer)
	if !ok {
		return
	}
	log := b.log.With("checkpoint", step, "key", short(key))
	log.Info("taking a checkpoint")
	started := time.Now()
	tmp, done, err := b.opts.Images.CheckpointTempDir(ctx)
	if err != nil {
		log.Warn("checkpoint not taken", "err", err)
		return
	}
	drop := func(err error) {
		log.Warn("checkpoint not taken", "err", err)
		if err := done(); err != nil {
			log.Warn("removing the checkpoint's temp dir", "err", err)
		}
	}
	files := map[string]string{ckState: filepath.Join(tmp, ckState), ckKeys: filepath.Join(tmp, ckKeys), ckSeed: filepath.Join(tmp, ckSeed), ckInfo: filepath.Join(tmp, ckInfo)}
	layer := filepath.Join(tmp, "disk.qcow2")
	paused := time.Now()
	err = b.waits.track(func() error {
		if err := cp.Checkpoint(ctx, files[ckState]); err != nil {
			return err
		}
		// The guest is paused and its disk flushed and released: the overlay is consistent.
		return copyPrivate(ctx, b.diskPath, layer)
	})
	if rerr := b.waits.track(func() error { return cp.Resume(ctx) }); rerr != nil {
		// A guest that does not go on fails the build at its next step, with the machine's
		// reason; the checkpoint is still good if it was written.
		err = errors.Join(err, fmt.Errorf("resume the guest: %w", rerr))
	}
	if err != nil {
		drop(err)
		return
	}
	pause := time.Since(paused)
	keys, err := communicator.MarshalKeys(b.keys)
	if err == nil {
		err = os.WriteFile(files[ckKeys], keys, 0o600)
	}
	if err == nil {
		err = copyPrivate(ctx, b.seedPath, files[ckSeed])
	}
	if err == nil {
		var info []byte
		info, err = json.Marshal(checkpointInfo{Seconds: time.Since(b.started).Seconds() + b.ck.skipped})
		if err == nil {
			err = os.WriteFile(files[ckInfo], info, 0o600)
		}
	}
	if err != nil {
		drop(err)
		return
	}
	parent := b.baseLayer
	if b.ck.at >= 0 {
		parent = b.ck.resumed.Layer
	}
	b.ck.saving.Add(1)
	go func() {
		defer b.ck.saving.Done()
		c, err := b.opts.Images.PutCheckpoint(context.WithoutCancel(ctx), images.Checkpoint{Key: key, Recipe: b.r.Name, Step: step}, files, layer, parent)
		if err != nil {
			drop(err)
			return
		}
		if err := done(); err != nil {
			log.Warn("removing the checkpoint's temp dir", "err", err)
		}
		log.Info("checkpoint taken", "guest_paused", pause.Round(time.Millisecond), "took", time.Since(started).Round(time.Millisecond), "bytes", c.Size)
	}()
	b.ck.taken = key
}

// finishCheckpoints waits for the checkpoints still being written, then holds the store to its
// size cap, least recently used first.
func (b *build) finishCheckpoints(ctx context.Context) error {
	b.ck.saving.Wait()
	if b.ck.keys == nil {
		return nil
	}
	removed, err := b.opts.Images.PruneCheckpoints(ctx, images.PruneCheckpoints{MaxSize: images.DefaultCheckpointCap})
	for _, c := range removed {
		b.log.Info("checkpoint removed: the cache is over its size cap", "recipe", c.Recipe, "after", c.Step, "bytes", c.Size)
	}
	return err
}

// resync sets a restored guest's clock from the host's: it stood still while the checkpoint was
// on disk, and apt, TLS and make notice a clock in the past.
func (b *build) resync(ctx context.Context) error {
	now := time.Now()
	cmd := communicator.Cmd{Command: fmt.Sprintf("date -u -s @%d.%09d >/dev/null", now.Unix(), now.Nanosecond()), Sudo: true}
	if err := b.waits.track(func() error { return b.guest.Run(ctx, cmd) }); err != nil {
		return fmt.Errorf("set the restored guest's clock: %w", err)
	}
	return nil
}

// copyPrivate copies src to a new file dst, mode 0600.
func copyPrivate(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, ctxio.Reader(ctx, in)); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// short is a key as logs show it.
func short(key string) string {
	if len(key) > 12 {
		return key[:12]
	}
	return strings.TrimSpace(key)
}
