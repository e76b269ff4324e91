package bake

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ingot-build/ingot/cloudinit"
	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/drift"
	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/qemuimg"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
	"github.com/ingot-build/ingot/secrets"
	"github.com/ingot-build/ingot/source"
)

// build is one build's state, passed from step to step. Each field is set by one step.
type build struct {
	opts    Options
	r       *recipes.Recipe
	log     *slog.Logger
	id      string
	outDir  string // OutDir/NAME
	workDir string

	base        string // fetch: the verified source file, then (prepare) its image-store layer
	baseFormat  string
	baseSum     string
	baseLayer   string // the image-store layer the build disk backs on, if any
	rootLayer   string // the bottom layer of baseLayer's chain: the disk the build's files came from
	image       *manifest.Image
	iso         string // fetch: the installer ISO (ISO sources)
	diskPath    string // prepare: the build disk (qcow2)
	seedPath    string // prepare
	keys        *communicator.Keys
	machine     hypervisor.Machine
	guest       guestConn // connect: the SSH connection to the build guest
	packages    []manifest.Package
	os          *manifest.OS // inventory: the image's distribution
	downloads   []string     // relative paths under workDir/downloads, published with the outputs
	outputs     []manifest.File
	manifest    *manifest.Manifest
	timings     []manifest.StepTiming
	provTimings []manifest.StepTiming // the timings of the recipe steps' units: the manifest's provisioners
	downloaded  []manifest.File       // the files download steps published, hashed
	started     time.Time
	failed      bool
	cleanups    []cleanup
	fwKind      firmware.Kind
	hold        *images.Hold // the store layers this build uses before it names its own
	waits       waits
	ck          checkpoints
	inputs      string // the sha256 of what decides the outputs (inputsDigest)
	diskSize    int64  // prepare: the build disk's virtual size
	// buildMachine is who the build machine was (inventory), for the test boots and the manifest.
	buildMachine *manifest.BuildMachine
	testFailed   bool              // a test boot's check failed: --keep-on-failure keeps the staged outputs
	files        []manifest.Entry  // generalize: the final image's file inventory
	known        map[string]string // generalize: file checksums kept for rootLayer (images.Store.FileSums)
	drift        *manifest.DriftSummary
	driftCrossed []drift.Crossed // the recipe's drift thresholds this build crossed
	skipPublish  bool            // --skip-if-same, and nothing drifted
	secrets      *secrets.Set    // the recipe's secrets, read when the build starts
	scanFound    []finding       // generalize: what the guest-side secret scan found in files

	// dial connects to the guest: communicator.Connect, or a fake guest in the unit tests.
	dial func(context.Context, communicator.Config) (guestConn, error)
	// cleanupWithin bounds the cleanups (0: cleanupTimeout); the unit tests shorten it.
	cleanupWithin time.Duration
}

// guestConn is what the pipeline needs of its connection to the build guest, which
// *communicator.Client is: the unit tests put a fake guest behind it.
type guestConn interface {
	Run(ctx context.Context, cmd communicator.Cmd) error
	Output(ctx context.Context, cmd communicator.Cmd) ([]byte, error)
	Upload(ctx context.Context, local, remote string, opt communicator.UploadOptions) error
	Download(ctx context.Context, remote, local string) error
	Reboot(ctx context.Context, command string) error
	Close() error
}

// dialSSH is build.dial for real guests.
func dialSSH(ctx context.Context, cfg communicator.Config) (guestConn, error) {
	c, err := communicator.Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func newBuild(opts Options) (*build, error) {
	if opts.Recipe == nil || opts.Driver == nil || opts.Sources == nil {
		return nil, errors.New("bake: Recipe, Driver and Sources are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OutDir == "" {
		opts.OutDir = "out"
	}
	if opts.WorkRoot == "" {
		root, err := DefaultWorkRoot()
		if err != nil {
			return nil, err
		}
		opts.WorkRoot = root
	}
	idb := make([]byte, 4)
	_, _ = rand.Read(idb)
	id := opts.Recipe.Name + "-" + time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(idb)
	fw, err := firmware.ParseKind(opts.Recipe.Machine.Firmware)
	if err != nil {
		return nil, err
	}
	if opts.Getenv == nil {
		opts.Getenv = os.LookupEnv
	}
	set, err := resolveSecrets(opts.Recipe, opts.Getenv)
	if err != nil {
		return nil, err
	}
	return &build{
		opts:    opts,
		r:       opts.Recipe,
		secrets: set,
		// Every line the build logs, a step's output above all, is masked.
		log:     slog.New(set.Handler(opts.Logger.Handler())).With("build", opts.Recipe.Name),
		id:      id,
		outDir:  filepath.Join(opts.OutDir, opts.Recipe.Name),
		started: time.Now(),
		fwKind:  fw,
		dial:    dialSSH,
		ck:      checkpoints{at: -1},
	}, nil
}

// fetch makes every remote input a verified file in the content-addressed cache.
func (b *build) fetch(ctx context.Context) error {
	src := b.r.Source
	var err error
	switch {
	case src.Disk != nil:
		b.base, err = b.fetchPinned(ctx, "source.disk", src.Disk.Pos, source.Input{URL: src.Disk.URL, SHA256: src.Disk.Pin()})
	case src.ISO != nil:
		b.iso, err = b.fetchPinned(ctx, "source.iso", src.ISO.Pos, source.Input{URL: src.ISO.URL, SHA256: src.ISO.Pin()})
	default:
		err = b.fetchImage(ctx)
	}
	return err
}

// fetchPinned fetches the recipe's source (field, at pos) and records its sha256, which names
// the cached file.
func (b *build) fetchPinned(ctx context.Context, field string, pos recipes.Pos, in source.Input) (string, error) {
	p, err := b.opts.Sources.Fetch(ctx, in)
	if err != nil {
		return "", fmt.Errorf("%s: %s: %w", pos, field, err)
	}
	b.baseSum = filepath.Base(p)
	return p, nil
}

// prepare makes the private work dir, the build disk, the keys and the seed.
func (b *build) prepare(ctx context.Context) error {
	if err := mkdirPrivate(b.opts.WorkRoot); err != nil {
		return fmt.Errorf("work root: %w", err)
	}
	// What killed builds left behind goes first: a work dir can hold gigabytes.
	if _, err := Sweep(ctx, b.log, b.opts.WorkRoot, b.opts.OutDir); err != nil {
		b.log.Warn("could not remove everything that builds that are gone left behind", "err", err)
	}
	b.workDir = filepath.Join(b.opts.WorkRoot, b.id)
	wd, err := claimDir(b.workDir, true)
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	b.onCleanup("remove the work dir", func(context.Context) error {
		if b.failed && b.opts.KeepOnFailure {
			if err := b.maskKept(); err != nil {
				return fmt.Errorf("mask the secrets in the kept logs; removing the work dir instead: %w", errors.Join(err, wd.Remove()))
			}
			b.log.Warn("kept the work dir of the failed build", "dir", b.workDir, "boot it by hand", b.manualBoot())
			return wd.Keep("kept by ingot build --keep-on-failure; remove this directory when done\n")
		}
		return wd.Remove()
	})

	b.diskPath = filepath.Join(b.workDir, "disk.qcow2")
	b.seedPath = filepath.Join(b.workDir, "seed.img")
	b.diskSize = b.r.Machine.DiskBytes
	if b.base != "" {
		var info qemuimg.ImageInfo
		err := b.waits.track(func() (err error) { info, err = b.inspectBase(ctx); return err })
		if err != nil {
			return err
		}
		if b.diskSize < info.VirtualSize {
			b.diskSize = info.VirtualSize // never shrink the image's own disk
		}
		b.baseFormat = info.Format
		if err := b.storeBase(ctx, info.Format); err != nil {
			return err
		}
	}
	if b.canCheckpoint() {
		keys, err := b.checkpointKeys()
		if err != nil {
			return err
		}
		b.ck.keys = keys
		b.findCheckpoint(ctx)
		if b.ck.at >= 0 {
			err := b.prepareResume(ctx)
			if err == nil || ctx.Err() != nil {
				return err
			}
			// Pruned since it was found, say: boot instead.
			b.log.Warn("the checkpoint cannot be used; booting instead", "after", b.checkpointStep(b.ck.at), "err", err)
			if err := b.dropResume(); err != nil {
				return err
			}
		}
	}
	return b.prepareFresh(ctx)
}

// prepareFresh makes the build disk (an overlay on the base, or an empty disk for an installer),
// new keys and the seed that gives them to the guest.
func (b *build) prepareFresh(ctx context.Context) error {
	if b.base != "" {
		if err := b.waits.track(func() error { return qemuimg.CreateOverlay(ctx, b.diskPath, b.base, b.baseFormat, b.diskSize) }); err != nil {
			return err
		}
	} else if err := b.waits.track(func() error { return qemuimg.Create(ctx, b.diskPath, "qcow2", b.diskSize) }); err != nil {
		return err
	}

	keys, err := communicator.GenerateKeys()
	if err != nil {
		return err
	}
	b.keys = keys
	format := cloudinit.FormatISO
	if b.r.CloudInit.SeedFormat == "vfat" {
		format = cloudinit.FormatVFAT
	}
	seed, err := cloudinit.New(cloudinit.Config{
		InstanceID: b.id,
		// One name for every build guest, not the recipe's: the guest at "booted" is then the
		// same for recipes that differ only in their name and steps, and they share its
		// checkpoint (recipes.BootCanonical leaves the name out).
		Hostname:      buildHostname,
		BuildUser:     cloudinit.BuildUser{Name: b.r.SSH.User, AuthorizedKeys: []string{keys.AuthorizedKey}},
		HostKeys:      []cloudinit.HostKey{{Private: keys.HostPrivatePEM, Public: keys.HostPublic}},
		UserData:      b.r.CloudInit.UserData,
		NetworkConfig: b.r.CloudInit.NetworkConfig,
		Format:        format,
	})
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	return seed.Write(ctx, b.seedPath)
}

// inspectBase reads the source image's format and size. Its format is known for a stored layer
// (the store recorded it) and for a cloud image whose recipe says source.disk.format, and the
// image is then opened as that format. Only a cloud image whose recipe does not say is probed:
// its bytes are a download pinned by its sha256, which no guest of ours wrote.
func (b *build) inspectBase(ctx context.Context) (qemuimg.ImageInfo, error) {
	format := b.baseFormat
	d := b.r.Source.Disk
	if d != nil {
		format = d.Format
	}
	if format == "" {
		info, err := qemuimg.Probe(ctx, b.base)
		if err != nil {
			return info, fmt.Errorf("inspect the source image: %w", err)
		}
		return info, nil
	}
	info, err := qemuimg.Info(ctx, b.base, format)
	// source.disk.format is checked against the download (docs/recipes.md). qemu-img reads any
	// file as raw, so for raw, and to say what a file is when it is not the format named, the
	// bytes are probed too: only to refuse a mismatch, never to open the image by what they say.
	if d != nil && (err != nil || format == "raw") {
		if got, perr := qemuimg.Probe(ctx, b.base); perr == nil && got.Format != format {
			return info, fmt.Errorf("%s: source.disk.format says %s but the image is %s", d.Pos, format, got.Format)
		}
	}
	if err != nil {
		return info, fmt.Errorf("inspect the source image: %w", err)
	}
	return info, nil
}

// arch is the build machine's architecture: machine.arch, or x86_64 for a recipe made in code
// without one (the recipe loader always sets it).
func (b *build) arch() string {
	if a := b.r.Machine.Arch; a != "" {
		return a
	}
	return recipes.ArchX86_64
}

func (b *build) spec(name string) hypervisor.Spec {
	m := b.r.Machine
	accel := hypervisor.Accel(m.Accel) // recipes checked it against the same names (TestRecipeNamesMatchHypervisor)
	if b.opts.Accel != "" {
		accel = b.opts.Accel
	}
	var extra []string
	for _, a := range m.QemuArgs {
		extra = append(extra, a...)
	}
	return hypervisor.Spec{
		Name:      b.r.Name + "-" + name,
		WorkDir:   b.workDir,
		Arch:      b.arch(),
		CPUs:      m.CPUs,
		MemoryMiB: m.MemoryMiB,
		Accel:     accel,
		Firmware:  b.fwKind,
		Disks: []hypervisor.Disk{
			// discard + detect-zeroes: what the guest frees or zeroes becomes holes, so
			// outputs carry only data.
			{Path: b.diskPath, Format: "qcow2", Discard: true, DetectZeroes: "unmap", BootIndex: 1},
			{Path: b.seedPath, Format: "raw", ReadOnly: true},
		},
		ExtraArgs: extra,
	}
}

// boot starts the build machine from its disk, or restores it from the checkpoint prepare found.
// A checkpoint that does not restore (its hash was right, so QEMU refused it) is dropped with a
// warning, and the build boots as if there had been none.
func (b *build) boot(ctx context.Context) error {
	if b.ck.at >= 0 {
		err := b.restore(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		b.log.Warn("the checkpoint did not restore; booting instead", "after", b.checkpointStep(b.ck.at), "key", short(b.ck.resumed.Key), "err", err)
		if err := b.opts.Images.RemoveCheckpoint(ctx, b.ck.resumed.Key); err != nil {
			b.log.Warn("removing the checkpoint that did not restore", "err", err)
		}
		if err := b.dropResume(); err != nil {
			return err
		}
		if err := b.prepareFresh(ctx); err != nil {
			return err
		}
		if err := b.install(ctx); err != nil {
			return err
		}
	}
	return b.start(ctx, b.spec("build"))
}

// start starts the build machine from spec and registers its cleanup.
func (b *build) start(ctx context.Context, spec hypervisor.Spec) error {
	if b.r.Source.ISO != nil {
		// The installed system got its user-data (ingot's user and host key, merged into
		// autoinstall.user-data) from the installer. The seed's outer autoinstall document is not
		// for it, and a cloud-init that found it would start over without ingot's keys.
		spec.Disks = spec.Disks[:1]
	}
	var m hypervisor.Machine
	err := b.waits.track(func() (err error) { m, err = b.opts.Driver.Start(ctx, spec); return err })
	if err != nil {
		return err
	}
	b.machine = m
	b.onCleanup("stop the build machine", func(ctx context.Context) error { return m.Kill(ctx) })
	if spec.Incoming != "" {
		b.log.Info("machine restored", "ssh", m.SSHAddr(), "console", m.ConsolePath())
	} else {
		b.log.Info("machine started", "ssh", m.SSHAddr(), "console", m.ConsolePath())
	}
	return nil
}

// connect waits for SSH, failing at once if the guest stops, then waits for cloud-init to finish
// and fails on its errors: provisioning never starts on a half-configured guest.
func (b *build) connect(ctx context.Context) error {
	abort := make(chan error, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	fatal := consoleWatch{path: b.machine.ConsolePath(), every: 500 * time.Millisecond}.watch(watchCtx)
	go func() {
		select {
		case <-b.machine.Done():
			abort <- b.guestStopped("while waiting for SSH")
		case err := <-fatal:
			abort <- &hypervisor.GuestError{Reason: err.Error(), ConsoleTail: b.machine.ConsoleTail(25)}
		case <-watchCtx.Done():
		}
	}()
	var c guestConn
	err := b.waitShown("waiting for SSH", func() (err error) {
		c, err = b.dial(ctx, communicator.Config{
			Addr: b.machine.SSHAddr(), User: b.r.SSH.User, Keys: b.keys,
			Timeout: b.r.SSH.Timeout, Logger: b.log, Abort: abort,
		})
		return err
	})
	if err != nil {
		return b.withConsole(fmt.Errorf("wait for SSH as %s at %s: %w", b.r.SSH.User, b.machine.SSHAddr(), err))
	}
	b.guest = c
	b.onCleanup("close SSH", func(context.Context) error { return c.Close() })
	if b.ck.at >= 0 {
		return b.resync(ctx) // cloud-init was done when the checkpoint was taken
	}
	if err := b.waitCloudInit(ctx); err != nil {
		return err
	}
	b.saveCheckpoint(ctx, 0)
	return nil
}

// buildHostname is the build guest's host name.
const buildHostname = "ingot-build"

// errMachineEnded cancels a unit's context when the build machine ends under it.
var errMachineEnded = errors.New("the build machine ended")

// onGuest wraps the run of a unit that works in the running guest (a recipe step, inventory,
// generalize) so that it ends as soon as the machine does, and says why: a guest whose kernel
// panics or whose QEMU dies mid-step fails the step at once with the machine's reason and its
// console, not with the broken SSH connection it leaves, seconds later, when keepalives give up.
func (b *build) onGuest(name string, run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil) // ends the watch below
		go func() {
			select {
			case <-b.machine.Done():
				cancel(errMachineEnded)
			case <-ctx.Done():
			}
		}()
		err := run(ctx)
		if errors.Is(context.Cause(ctx), errMachineEnded) {
			return b.guestStopped("during " + name)
		}
		return err
	}
}

// guestStopped says why the machine stopped, with its console tail.
func (b *build) guestStopped(while string) error {
	if err := b.machine.Err(); err != nil {
		return fmt.Errorf("%s: %w", while, err)
	}
	return &hypervisor.GuestError{Reason: "the guest powered off " + while, ConsoleTail: b.machine.ConsoleTail(25)}
}

func (b *build) withConsole(err error) error {
	var ge *hypervisor.GuestError
	if errors.As(err, &ge) {
		return err
	}
	return fmt.Errorf("%w\nthe serial console (%s) ends with:\n    %s", err, b.machine.ConsolePath(),
		strings.ReplaceAll(b.machine.ConsoleTail(20), "\n", "\n    "))
}

func (b *build) waitCloudInit(ctx context.Context) error {
	var out bytes.Buffer
	err := b.waits.track(func() error {
		return b.guest.Run(ctx, communicator.Cmd{Command: "cloud-init status --wait --long", Stdout: &out, Stderr: &out})
	})
	var exit *communicator.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.Status == 2:
		// cloud-init ≥ 23.4 says 2 for "done with recoverable errors" (deprecations): a warning.
		b.log.Warn("cloud-init finished with recoverable errors", "status", strings.TrimSpace(out.String()))
		return nil
	case errors.As(err, &exit):
		return fmt.Errorf("cloud-init failed in the guest (%v):\n%s", err, strings.TrimSpace(out.String()))
	default:
		return fmt.Errorf("wait for cloud-init: %w", err)
	}
}

func (b *build) manualBoot() string {
	return manualBoot(b.arch(), b.r.Machine.MemoryMiB, b.r.Machine.CPUs, b.fwKind, filepath.Join(b.workDir, "disk.qcow2"), filepath.Join(b.workDir, "seed.img"))
}

// shutdown powers the guest off in order; a forced stop is a warning (the image is consistent at
// the block level, which qemu-img check confirms later) — unless the guest panicked.
func (b *build) shutdown(ctx context.Context) error {
	if b.guest != nil {
		// A close error does not fail a build whose guest then powers off in order.
		if err := b.guest.Close(); err != nil {
			b.log.Warn("closing SSH before power-off", "err", err)
		}
	}
	err := b.waits.track(func() error { return b.machine.Shutdown(ctx) })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hypervisor.ErrForced):
		b.log.Warn("the guest did not power off by itself", "err", err)
		return nil
	default:
		return err
	}
}
