package bake_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/qemu"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/testguest"
	"github.com/ingot-build/ingot/manifest"
)

// countingDriver counts the machines a build starts (booted or restored).
type countingDriver struct {
	*qemu.Driver
	started atomic.Int32
}

func (d *countingDriver) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	d.started.Add(1)
	return d.Driver.Start(ctx, spec)
}

// ran lists the manifest's recipe steps that ran and those restored from a checkpoint.
func ran(m *manifest.Manifest) (ran, restored []string) {
	for _, s := range m.Provisioners {
		if s.Restored {
			restored = append(restored, s.Step)
		} else {
			ran = append(ran, s.Step)
		}
	}
	return ran, restored
}

// Checkpointed builds on a real guest (issue 13), one cold boot for all of them: the cold build
// takes "booted" and a checkpoint after each step but the last; the same recipe again is up to
// date and starts no machine; editing the last step restores after step 2 and runs only step 3,
// on a guest whose clock was set from the host's, and the output boots with the files of all
// three steps; changing a byte of the uploaded file re-runs that step and the next; a corrupt
// checkpoint is detected, skipped with a warning, and the one before it used. The file inventory
// of a rebuild reads only the files not as the cold build hashed them, and gets every step's
// file's sum right.
func TestCheckpointedBuilds(t *testing.T) {
	t.Parallel()
	img := testguest.CloudImage(t)
	dir := t.TempDir()
	recipe := func(three string) string {
		return fmt.Sprintf(`name: e2e-ck
source:
  disk: { url: "file://%s", sha256: %s }
machine: { cpus: 2, memory: 1GiB, disk: 4GiB, firmware: bios }
provision:
  - shell: echo one > /etc/one
  - file: { src: files/two.conf, dst: /etc/two.conf }
  - shell: echo %s > /etc/three && echo "guest clock $(date +%%s)"
outputs: [ { format: qcow2 } ]
`, img.Image, img.SHA256, three)
	}
	files := map[string]string{"files/two.conf": "two = 2\n"}
	driver := &countingDriver{Driver: qemu.New()}
	withCache := func(o *bake.Options) { o.NoCache = false; o.Driver = driver }
	logOf := func() string {
		b, err := os.ReadFile(filepath.Join(dir, "build.log"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	check := func(what string, res *bake.Result, wantRan, wantRestored []string) {
		t.Helper()
		r, rs := ran(res.Manifest)
		if strings.Join(r, ",") != strings.Join(wantRan, ",") || strings.Join(rs, ",") != strings.Join(wantRestored, ",") {
			t.Errorf("%s: ran %q and restored %q, want ran %q and restored %q", what, r, rs, wantRan, wantRestored)
		}
	}
	all := []string{"provision[0] shell", "provision[1] file", "provision[2] shell"}
	// hashed says how many files the build's file inventory read, and how many it knew from an
	// earlier build on the same base (images.Store.FileSums).
	hashedRE := regexp.MustCompile(`file inventory: (\d+) files hashed in \d+ ms; (\d+) more unchanged`)
	hashed := func(what string) (read, known int) {
		t.Helper()
		m := hashedRE.FindStringSubmatch(logOf())
		if m == nil {
			t.Fatalf("%s: the log does not say what the file inventory hashed", what)
		}
		read, _ = strconv.Atoi(m[1])
		known, _ = strconv.Atoi(m[2])
		return read, known
	}
	// sums are the sha256 of some files, as the build's published inventory has them.
	sums := func(res *bake.Result, paths ...string) string {
		t.Helper()
		entries, err := manifest.ReadInventory(res.Dir, *res.Manifest.Inventory)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range paths {
			i := slices.IndexFunc(entries, func(e manifest.Entry) bool { return e.Path == p })
			if i < 0 {
				t.Fatalf("the inventory has no %s", p)
			}
			got = append(got, entries[i].SHA256)
		}
		return strings.Join(got, " ")
	}
	sha := func(contents ...string) string {
		var s []string
		for _, c := range contents {
			s = append(s, fmt.Sprintf("%x", sha256.Sum256([]byte(c))))
		}
		return strings.Join(s, " ")
	}
	stepFiles := []string{"/etc/one", "/etc/two.conf", "/etc/three"}

	// The cold build.
	res, err := runBuildIn(t, dir, recipe("three"), files, withCache)
	if err != nil {
		t.Fatalf("cold build: %v", err)
	}
	check("cold build", res, all, nil)
	for _, want := range []string{`checkpoint taken" build=e2e-ck checkpoint=booted`, `checkpoint="provision[0] shell"`, `checkpoint="provision[1] file"`} {
		if !strings.Contains(logOf(), want) {
			t.Errorf("cold build: the log does not say %s", want)
		}
	}
	if read, known := hashed("cold build"); known != 0 || read < 10000 {
		t.Errorf("cold build: the file inventory hashed %d files and knew %d; want every file hashed", read, known)
	}
	if got, want := sums(res, stepFiles...), sha("one\n", "two = 2\n", "three\n"); got != want {
		t.Errorf("cold build: the inventory's sums of %v = %s, want %s", stepFiles, got, want)
	}
	store, err := images.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	cps, err := store.Checkpoints()
	if err != nil || len(cps) != 3 {
		t.Fatalf("the store holds %d checkpoints (%v), want 3: booted and after the first two steps", len(cps), err)
	}
	for _, c := range cps {
		if fi, err := os.Stat(c.Dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("checkpoint dir %s: %v, want 0700", c.Dir, fi.Mode())
		}
	}

	// Nothing changed: up to date, no machine.
	before := driver.started.Load()
	started := time.Now()
	res, err = runBuildIn(t, dir, recipe("three"), files, withCache)
	if err != nil || !res.UpToDate {
		t.Fatalf("the same build again: %+v, %v; want up to date", res, err)
	}
	if n := driver.started.Load() - before; n != 0 {
		t.Errorf("an up-to-date build started %d machines", n)
	}
	t.Logf("up to date in %s", time.Since(started).Round(time.Millisecond))

	// The last step edited: restored after step 2, and only step 3 runs.
	res, err = runBuildIn(t, dir, recipe("THREE"), files, withCache)
	if err != nil {
		t.Fatalf("rebuild with the last step edited: %v", err)
	}
	check("last step edited", res, all[2:], all[:2])
	if !strings.Contains(logOf(), "resuming after provision[1] file from checkpoint") {
		t.Error("the rebuild does not say what it resumed from")
	}
	// Its file inventory reads only what changed since the cold build hashed the same files:
	// what step 3 and generalize wrote, not the base's files or what the restored steps wrote.
	if read, known := hashed("last step edited"); read > 1000 || known < 10000 {
		t.Errorf("last step edited: the file inventory hashed %d files and knew %d; want most known", read, known)
	}
	if got, want := sums(res, stepFiles...), sha("one\n", "two = 2\n", "THREE\n"); got != want {
		t.Errorf("last step edited: the inventory's sums of %v = %s, want %s", stepFiles, got, want)
	}
	// Its output is booted at the end: later builds publish over it.
	edited := filepath.Join(dir, "edited.qcow2")
	if err := os.Rename(filepath.Join(res.Dir, "e2e-ck.qcow2"), edited); err != nil {
		t.Fatal(err)
	}

	// One byte of the uploaded file: that step and the next run again.
	files["files/two.conf"] = "two = 3\n"
	res, err = runBuildIn(t, dir, recipe("THREE"), files, withCache)
	if err != nil {
		t.Fatalf("rebuild with an uploaded file changed: %v", err)
	}
	check("uploaded file changed", res, all[1:], all[:1])
	// The upload rewrote /etc/two.conf on a guest restored after step 1: read again, not known.
	if got, want := sums(res, stepFiles...), sha("one\n", "two = 3\n", "THREE\n"); got != want {
		t.Errorf("uploaded file changed: the inventory's sums of %v = %s, want %s", stepFiles, got, want)
	}

	// A corrupt checkpoint (the one after provision[1], just taken, truncated) is skipped with
	// a warning; the build resumes from the one before it.
	cps, err = store.Checkpoints()
	if err != nil {
		t.Fatal(err)
	}
	corrupted := false
	for _, c := range cps {
		if c.Step == "provision[1] file" && c.Used.Equal(c.Created) {
			if err := os.Truncate(filepath.Join(c.Dir, "state.zst"), 4096); err != nil {
				t.Fatal(err)
			}
			corrupted = true
		}
	}
	if !corrupted {
		t.Fatalf("no fresh checkpoint after provision[1] among %+v", cps)
	}
	lastBuild := time.Now()
	res, err = runBuildIn(t, dir, recipe("3"), files, withCache)
	if err != nil {
		t.Fatalf("rebuild over a corrupt checkpoint: %v", err)
	}
	check("corrupt checkpoint", res, all[1:], all[:1])
	if !strings.Contains(logOf(), "checkpoint unusable; trying the one before it") {
		t.Error("the build did not warn about the corrupt checkpoint")
	}
	// Its steps ran on a guest restored from a checkpoint taken builds ago (after provision[0],
	// in the byte-change build): they saw the host's time, not the checkpoint's.
	clock := regexp.MustCompile(`msg="guest clock (\d+)"`).FindStringSubmatch(logOf())
	if clock == nil {
		t.Fatal("step 3 did not log the guest's clock")
	}
	secs, _ := strconv.ParseInt(clock[1], 10, 64)
	if guest := time.Unix(secs, 0); guest.Before(lastBuild.Add(-5*time.Second)) || guest.After(time.Now().Add(5*time.Second)) {
		t.Errorf("step 3 saw the time %s, want one during the last build (%s to now): the restored guest's clock was not set",
			guest.UTC(), lastBuild.UTC())
	}

	// The output of the build that restored after step 2 and ran only step 3 boots and holds
	// what all three steps did.
	wd := filepath.Join(dir, "boot")
	if err := os.Mkdir(wd, 0o700); err != nil {
		t.Fatal(err)
	}
	access := testguest.NewSeed(t, wd, "check", nil)
	m, err := qemu.New().Start(context.Background(), hypervisor.Spec{Name: "ck-check", WorkDir: wd, MemoryMiB: 1024,
		Disks: []hypervisor.Disk{{Path: edited, Format: "qcow2"}, {Path: access.Seed, Format: "raw", ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill(context.Background())
	c := access.Dial(t, m.SSHAddr(), m.Done(), 5*time.Minute)
	got, err := testguest.Run(c, "cat /etc/one /etc/two.conf /etc/three")
	if err != nil {
		t.Fatalf("check the image: %v\n%s", err, got)
	}
	if got != "one\ntwo = 2\nTHREE\n" {
		t.Errorf("the image holds %q, want one, two = 2 and THREE", got)
	}
}
