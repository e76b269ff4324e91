package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/images"
)

// putCheckpoint stores a checkpoint of recipe after step whose state file holds state bytes,
// its layer a small qcow2 on base.
func putCheckpoint(t *testing.T, s *images.Store, base images.Layer, recipe, step string, state int) images.Checkpoint {
	t.Helper()
	ctx := context.Background()
	dir, done, err := s.CheckpointTempDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	layer := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", base.Path, "-F", base.Format, layer, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	// Each its own layer: what the guest wrote differs.
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -P %d 0 64k", state/1000), layer).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	files := map[string]string{"state.zst": filepath.Join(dir, "state.zst")}
	if err := os.WriteFile(files["state.zst"], bytes.Repeat([]byte{byte(len(step))}, state), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(recipe + step))
	c, err := s.PutCheckpoint(ctx, images.Checkpoint{Key: hex.EncodeToString(sum[:]), Recipe: recipe, Step: step}, files, layer, base.Digest)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ingot cache ls lists the checkpoints with their recipe, step and size; cache prune
// --checkpoints removes them by its rules, and only with --checkpoints; their layers go too.
func TestCacheCheckpoints(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	store, err := images.Open(filepath.Join(cache, "ingot", "images"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, err := store.NewHold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", src, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	base, err := store.AddBase(ctx, src, strings.Repeat("ab", 32), "qcow2", h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Tag(ctx, images.Image{Name: "base", Layer: base.Digest}); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	web := []images.Checkpoint{
		putCheckpoint(t, store, base, "web", "booted", 1000),
		putCheckpoint(t, store, base, "web", "provision[0] shell", 2000),
		putCheckpoint(t, store, base, "web", "provision[1] file", 3000),
	}
	putCheckpoint(t, store, base, "db", "booted", 4000)

	cli := func(args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"ingot"}, args...), &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	out, errOut, code := cli("cache", "ls")
	if code != 0 || errOut != "" {
		t.Fatalf("cache ls: exit %d\n%s%s", code, out, errOut)
	}
	for _, re := range []string{
		`(?m)^CHECKPOINT +RECIPE +AFTER +SIZE +CREATED +LAST USED$`,
		`(?m)^` + web[2].Key[:12] + ` +web +provision\[1\] file +[0-9.]+ [KM]iB `,
		`(?m)^4 checkpoint\(s\), .* in ` + regexp.QuoteMeta(store.Dir()),
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("cache ls does not match %s:\n%s", re, out)
		}
	}

	// The rules belong to --checkpoints; a plain prune leaves checkpoints alone.
	for _, args := range [][]string{{"--keep-last", "1"}, {"--max-size", "1GiB"}, {"--checkpoints", "--max-size", "lots"}, {"--checkpoints", "--keep-last", "-1"}} {
		if _, _, code := cli(append([]string{"cache", "prune"}, args...)...); code != 2 {
			t.Errorf("cache prune %v: exit %d, want 2", args, code)
		}
	}
	if out, _, code := cli("cache", "prune"); code != 0 || strings.Contains(out, "checkpoint") {
		t.Errorf("a plain cache prune: exit %d\n%s", code, out)
	}

	// --keep-last 1: the most recently used checkpoint of each recipe stays.
	out, errOut, code = cli("cache", "prune", "--checkpoints", "--keep-last", "1")
	if code != 0 {
		t.Fatalf("cache prune --checkpoints --keep-last 1: exit %d\n%s%s", code, out, errOut)
	}
	for _, c := range web[:2] {
		if !strings.Contains(out, "removed checkpoint "+c.Key[:12]+" (web, after "+c.Step) {
			t.Errorf("prune did not say it removed %s:\n%s", c.Step, out)
		}
		if _, err := os.Stat(c.Dir); err == nil {
			t.Errorf("checkpoint %s is still there", c.Dir)
		}
	}
	if !strings.Contains(out, "pruned 2 checkpoint(s)") {
		t.Errorf("prune output:\n%s", out)
	}
	for _, c := range web[:2] {
		if _, err := store.LayerFile(c.Layer); err == nil {
			t.Errorf("the layer of the pruned checkpoint %s is still in the store", c.Step)
		}
	}
	left, err := store.Checkpoints()
	if err != nil || len(left) != 2 {
		t.Fatalf("%d checkpoints left (%v), want web's last and db's", len(left), err)
	}

	// --older-than 0: everything.
	out, _, code = cli("cache", "prune", "--checkpoints", "--older-than", "0")
	if left, _ := store.Checkpoints(); code != 0 || len(left) != 0 || !strings.Contains(out, "pruned 2 checkpoint(s)") {
		t.Errorf("cache prune --checkpoints --older-than 0: exit %d, %d left\n%s", code, len(left), out)
	}
	if out, _, _ := cli("cache", "ls"); !strings.Contains(out, "no checkpoints in "+store.Dir()) {
		t.Errorf("cache ls after pruning all:\n%s", out)
	}
}
