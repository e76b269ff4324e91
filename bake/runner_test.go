package bake

// Unit tests of the runner, its cleanups and whole builds, on a fake driver and a fake guest: no
// QEMU (qemu-img makes the tiny source disk and the outputs), in milliseconds. What only a real
// guest proves stays in bake_test.go.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
	"github.com/ingot-build/ingot/source"
)

// journal records, in order, what the fakes and the test units were asked to do.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, fmt.Sprintf(format, args...))
}

func (j *journal) all() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

// has reports whether an event starts with prefix.
func (j *journal) has(prefix string) bool {
	return slices.ContainsFunc(j.all(), func(e string) bool { return strings.HasPrefix(e, prefix) })
}

// fakeDriver starts fakeMachines.
type fakeDriver struct {
	j *journal
	// kill, when set, is what the machines' Kill does once journaled.
	kill func(ctx context.Context) error
	// machine is the last machine started; test boots start machines side by side.
	machine atomic.Pointer[fakeMachine]
	// console, when set, says what a machine's console holds once it has started.
	console func(hypervisor.Spec) string
}

func (d *fakeDriver) Start(_ context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	if spec.Incoming != "" {
		state, err := os.ReadFile(spec.Incoming)
		if err != nil {
			return nil, err
		}
		d.j.add("restore %s from %s", spec.Name, state)
	} else {
		d.j.add("start %s", spec.Name)
	}
	console := filepath.Join(spec.WorkDir, "console.log")
	text := "fake console\n"
	if d.console != nil {
		text = d.console(spec)
	}
	if err := os.WriteFile(console, []byte(text), 0o600); err != nil {
		return nil, err
	}
	m := &fakeMachine{j: d.j, name: spec.Name, console: console, kill: d.kill, done: make(chan struct{})}
	d.machine.Store(m)
	return m, nil
}

// fakeMachine is a machine that runs until it is shut down or killed.
type fakeMachine struct {
	j       *journal
	name    string
	console string
	kill    func(ctx context.Context) error
	done    chan struct{}
	stop    sync.Once
	err     error // why the machine ended, set before done is closed
}

func (m *fakeMachine) SSHAddr() string            { return "127.0.0.1:2222" }
func (m *fakeMachine) ConsolePath() string        { return m.console }
func (m *fakeMachine) ConsoleTail(int) string     { return "fake console" }
func (m *fakeMachine) Events() []hypervisor.Event { return nil }
func (m *fakeMachine) Done() <-chan struct{}      { return m.done }
func (m *fakeMachine) Err() error                 { return m.err }

// restoringDriver is a fakeDriver whose machines checkpoint and restore.
type restoringDriver struct{ *fakeDriver }

func (restoringDriver) CanRestore() bool { return true }

// Checkpoint writes a state file that names the step the guest last did.
func (m *fakeMachine) Checkpoint(_ context.Context, statePath string) error {
	all := m.j.all()
	m.j.add("checkpoint")
	return os.WriteFile(statePath, []byte("state after "+all[len(all)-1]), 0o600)
}

func (m *fakeMachine) Resume(context.Context) error {
	m.j.add("resume")
	return nil
}

// crash ends the machine by itself, as a guest kernel panic or a dead QEMU does.
func (m *fakeMachine) crash(err error) {
	m.stop.Do(func() {
		m.err = err
		close(m.done)
	})
}

func (m *fakeMachine) Shutdown(context.Context) error {
	m.j.add("shutdown %s", m.name)
	m.stop.Do(func() { close(m.done) })
	return nil
}

func (m *fakeMachine) Wait(ctx context.Context) error {
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *fakeMachine) Kill(ctx context.Context) error {
	m.j.add("kill %s", m.name)
	if m.kill != nil {
		return m.kill(ctx)
	}
	m.stop.Do(func() { close(m.done) })
	return nil
}

// fakeGuest is a guest connection that journals each action ("run CMD", "upload SRC DST", …)
// and does what act says.
type fakeGuest struct {
	j *journal
	// act, when set, is asked before each action; an error it returns is the action's. It may
	// block (until ctx ends, say).
	act func(ctx context.Context, action string) error
	// closeErr is what every Close returns.
	closeErr error
	// reply, when set, is what an action writes to its stdout (Run) or returns (Output).
	reply func(action string) string
	// cmds are the commands Run was given, secrets and all.
	cmds []communicator.Cmd
}

func (g *fakeGuest) do(ctx context.Context, format string, args ...any) error {
	action := fmt.Sprintf(format, args...)
	g.j.add("%s", action)
	if g.act == nil {
		return nil
	}
	return g.act(ctx, action)
}

func sudo(cmd communicator.Cmd) string {
	if cmd.Sudo {
		return "sudo "
	}
	return ""
}

func (g *fakeGuest) Run(ctx context.Context, cmd communicator.Cmd) error {
	action := fmt.Sprintf("run %s%s", sudo(cmd), cmd.Command)
	g.cmds = append(g.cmds, cmd)
	err := g.do(ctx, "%s", action)
	if g.reply != nil && cmd.Stdout != nil {
		_, _ = io.WriteString(cmd.Stdout, g.reply(action))
	}
	return err
}

func (g *fakeGuest) Output(ctx context.Context, cmd communicator.Cmd) ([]byte, error) {
	action := fmt.Sprintf("output %s%s", sudo(cmd), cmd.Command)
	if err := g.do(ctx, "%s", action); err != nil {
		return nil, err
	}
	if g.reply != nil {
		return []byte(g.reply(action)), nil
	}
	if strings.HasPrefix(action, "output cat /run/ingot-inventory/") || strings.HasPrefix(action, "output cat /run/ingot-scan/") {
		return nil, nil // an image of no files, and nothing the secret scan found
	}
	return []byte("bash\t5.2\ncoreutils\t9.1\n"), nil
}

func (g *fakeGuest) Upload(ctx context.Context, local, remote string, _ communicator.UploadOptions) error {
	return g.do(ctx, "upload %s %s", filepath.Base(local), remote)
}

func (g *fakeGuest) Download(ctx context.Context, remote, local string) error {
	if err := g.do(ctx, "download %s", remote); err != nil {
		return err
	}
	return os.WriteFile(local, []byte("downloaded "+remote+"\n"), 0o600)
}

func (g *fakeGuest) Reboot(ctx context.Context, _ string) error { return g.do(ctx, "reboot") }

func (g *fakeGuest) Close() error {
	g.j.add("close")
	return g.closeErr
}

// fakeRecipe provisions with every kind of step; provision[1] is the one tests make fail.
const fakeRecipe = `name: fake
source: { disk: { url: "file://%s", sha256: %s } }
machine: { cpus: 1, memory: 512MiB, disk: 1GiB, firmware: bios }
provision:
  - shell: echo one
  - shell: make-it-fail
  - file: { src: files/app.conf, dst: /etc/app.conf }
  - reboot: {}
  - file: { src: /var/log/a.log, dst: logs/a.log, direction: download }
outputs: [ { format: qcow2 } ]
`

// fakeEnv is a build on the fake driver and the fake guest, and what they journal.
type fakeEnv struct {
	b     *build
	j     *journal
	guest *fakeGuest
	work  string        // the work root
	out   string        // the output dir
	log   *bytes.Buffer // written under slog's handler lock, read once the build is over
}

// newFakeBuild makes a build of fakeRecipe from a 16 MiB qcow2 source disk, with opts changed
// by tweak; its cleanups are bounded by 100 ms.
func newFakeBuild(t *testing.T, tweak func(*Options)) *fakeEnv {
	t.Helper()
	return newFakeBuildIn(t, t.TempDir(), func(r string) string { return r }, tweak)
}

// newFakeBuildIn is newFakeBuild in dir, where an earlier build may have left its caches, store
// and outputs, of fakeRecipe as edit changes it.
func newFakeBuildIn(t *testing.T, dir string, edit func(string) string, tweak func(*Options)) *fakeEnv {
	t.Helper()
	src := filepath.Join(dir, "source.qcow2")
	if _, err := os.Stat(src); err != nil {
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", src, "16M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create: %v\n%s", err, out)
		}
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if err := os.MkdirAll(filepath.Join(dir, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "files", "app.conf")); err != nil {
		if err := os.WriteFile(filepath.Join(dir, "files", "app.conf"), []byte("answer = 42\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := recipes.LoadBytes("r.yaml", []byte(edit(fmt.Sprintf(fakeRecipe, src, hex.EncodeToString(sum[:])))), dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	fetcher, err := source.New(filepath.Join(dir, "cache"), source.WithLogger(log), source.WithProgress(progress.Nop()))
	if err != nil {
		t.Fatal(err)
	}
	j := &journal{}
	opts := Options{
		Recipe: r, OutDir: filepath.Join(dir, "out"), WorkRoot: filepath.Join(dir, "work"), Logger: log,
		Driver: &fakeDriver{j: j}, Sources: fetcher, Progress: progress.Nop(),
		TestBoot: recipes.TestBootNone, // testboot_test.go tests the test boots
	}
	if tweak != nil {
		tweak(&opts)
	}
	b, err := newBuild(opts)
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGuest{j: j}
	b.dial = func(_ context.Context, cfg communicator.Config) (guestConn, error) {
		j.add("dial %s@%s", cfg.User, cfg.Addr)
		return g, nil
	}
	b.cleanupWithin = 100 * time.Millisecond
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal:\n%s\nlog:\n%s", strings.Join(j.all(), "\n"), logs)
		}
	})
	return &fakeEnv{b: b, j: j, guest: g, work: opts.WorkRoot, out: opts.OutDir, log: logs}
}

// failOn makes the actions that start with prefix fail with err.
func failOn(prefix string, err error) func(context.Context, string) error {
	return func(_ context.Context, action string) error {
		if strings.HasPrefix(action, prefix) {
			return err
		}
		return nil
	}
}

// matchPrefixes reports whether got has as many events as want, each starting with its want.
func matchPrefixes(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			return false
		}
	}
	return true
}

// Each recipe step is a unit of its own, between connect and inventory, named by its place in
// the provision list and placed in the recipe.
func TestRunnerUnitsOfARecipe(t *testing.T) {
	e := newFakeBuild(t, nil)
	var names, ats []string
	for _, u := range e.b.units() {
		names = append(names, u.name)
		ats = append(ats, u.at())
	}
	want := []string{"fetch", "prepare", "install", "boot", "connect",
		"provision[0] shell", "provision[1] shell", "provision[2] file", "provision[3] reboot", "provision[4] file",
		"inventory", "generalize", "shutdown", "snapshot", "scan", "convert", "test", "drift", "record"}
	if !slices.Equal(names, want) {
		t.Errorf("units %q\nwant  %q", names, want)
	}
	wantAt := []string{"", "", "", "", "", "r.yaml:5:5", "r.yaml:6:5", "r.yaml:7:5", "r.yaml:8:5", "r.yaml:9:5", "", "", "", "", "", "", "", "", ""}
	if !slices.Equal(ats, wantAt) {
		t.Errorf("units at %q\nwant     %q", ats, wantAt)
	}
}

// The runner runs units in order and times each; it stops at a failing unit, or when its
// context ends, naming the unit; the cleanups the units registered run in reverse either way,
// and their errors are joined into the build's.
func TestRunner(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name string
		// do is what unit 2 of 4 does, with the test's cancel.
		do         func(ctx context.Context, cancel context.CancelFunc) error
		cleanupErr error // what unit 1's cleanup returns
		wantRan    int   // units that ran, were timed and registered a cleanup
		wantStep   string
		wantErr    []string // in the error's text; none: no error
		wantIs     error
	}{
		{name: "all succeed", do: func(context.Context, context.CancelFunc) error { return nil }, wantRan: 4},
		{name: "a unit fails", do: func(context.Context, context.CancelFunc) error { return errBoom },
			wantRan: 3, wantStep: "u2", wantErr: []string{"step u2: boom"}, wantIs: errBoom},
		{name: "cancelled while a unit runs", do: func(ctx context.Context, cancel context.CancelFunc) error {
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}, wantRan: 3, wantStep: "u2", wantErr: []string{"step u2: interrupted: context canceled"}, wantIs: context.Canceled},
		{name: "cancelled between units", do: func(_ context.Context, cancel context.CancelFunc) error {
			cancel()
			return nil
		}, wantRan: 3, wantStep: "u3", wantErr: []string{"step u3: interrupted: context canceled"}, wantIs: context.Canceled},
		{name: "a cleanup fails after a unit failed", do: func(context.Context, context.CancelFunc) error { return errBoom }, cleanupErr: errors.New("stuck"),
			wantRan: 3, wantStep: "u2", wantErr: []string{"step u2: boom", "undo u1: stuck"}, wantIs: errBoom},
		{name: "a cleanup fails after success", do: func(context.Context, context.CancelFunc) error { return nil }, cleanupErr: errors.New("stuck"),
			wantRan: 4, wantErr: []string{"undo u1: stuck"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			j := &journal{}
			b := &build{log: slog.New(slog.DiscardHandler), cleanupWithin: 100 * time.Millisecond}
			var units []unit
			for i := range 4 {
				name := fmt.Sprintf("u%d", i)
				units = append(units, unit{name: name, run: func(ctx context.Context) error {
					j.add("run %s", name)
					b.onCleanup("undo "+name, func(context.Context) error {
						j.add("undo %s", name)
						if i == 1 {
							return tt.cleanupErr
						}
						return nil
					})
					if i == 2 {
						return tt.do(ctx, cancel)
					}
					return nil
				}})
			}
			runErr := b.run(ctx, units)
			err := errors.Join(runErr, b.cleanup())

			var want []string
			for i := range tt.wantRan {
				want = append(want, fmt.Sprintf("run u%d", i))
			}
			for i := tt.wantRan - 1; i >= 0; i-- {
				want = append(want, fmt.Sprintf("undo u%d", i))
			}
			if got := j.all(); !slices.Equal(got, want) {
				t.Errorf("journal %q\nwant    %q", got, want)
			}
			var timed []string
			for _, s := range b.timings {
				timed = append(timed, s.Step)
			}
			if len(timed) != tt.wantRan {
				t.Errorf("timed %q, want the %d units that ran", timed, tt.wantRan)
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("err = %v, want none", err)
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to say %q", err, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want it to be %v", err, tt.wantIs)
			}
			var se *StepError
			if tt.wantStep != "" && (!errors.As(err, &se) || se.Step != tt.wantStep || len(se.Steps) != len(timed)) {
				t.Errorf("err = %#v, want a StepError at %s with the timings", se, tt.wantStep)
			}
			if tt.wantStep != "" && !b.failed {
				t.Error("the build is not marked failed, so --keep-on-failure would not keep it")
			}
		})
	}
}

// A whole build on the fake driver and guest: the guest gets the provisioning in order, then the
// inventory, then generalize; the outputs are published with a manifest that reads back, each
// recipe step timed as a unit of its own; the cleanups close SSH and stop the machine, and leave
// no work dir.
func TestFakeBuild(t *testing.T) {
	e := newFakeBuild(t, func(o *Options) { o.KeepOnFailure = true })
	res, err := e.b.bake(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"start fake-build",
		"dial ingot@127.0.0.1:2222",
		"run cloud-init status --wait --long",
		"run sudo echo one",
		"run sudo make-it-fail",
		"upload app.conf /etc/app.conf",
		"reboot",
		"download /var/log/a.log",
		"output if command -v dpkg-query",
		"output sudo cat /etc/machine-id",
		"run sudo umask 077; rm -rf /run/ingot-scan",
		"output cat /run/ingot-inventory/meta",
		"output cat /run/ingot-inventory/sums",
		"output cat /run/ingot-scan/found",
		"close",
		"shutdown fake-build",
		// the cleanups
		"close",
		"kill fake-build",
	}
	if got := e.j.all(); !matchPrefixes(got, want) {
		t.Errorf("journal:\n  %s\nwant (prefixes):\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	m, err := manifest.Read(filepath.Join(res.Dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, s := range m.Steps {
		steps = append(steps, s.Step+"@"+s.At)
	}
	wantSteps := []string{"fetch@", "prepare@", "install@", "boot@", "connect@",
		"provision[0] shell@r.yaml:5:5", "provision[1] shell@r.yaml:6:5", "provision[2] file@r.yaml:7:5",
		"provision[3] reboot@r.yaml:8:5", "provision[4] file@r.yaml:9:5",
		"inventory@", "generalize@", "shutdown@", "snapshot@", "scan@", "convert@", "test@", "drift@"} // record writes the manifest
	if !slices.Equal(steps, wantSteps) || !slices.Equal(m.Provisioners, m.Steps[5:10]) {
		t.Errorf("manifest steps %q\nwant %q\nprovisioners %+v", steps, wantSteps, m.Provisioners)
	}
	var files []string
	for _, f := range slices.Concat(m.Outputs, m.Downloads) {
		files = append(files, f.File)
		if _, err := os.Stat(filepath.Join(res.Dir, f.File)); err != nil {
			t.Errorf("%s is in the manifest but not published: %v", f.File, err)
		}
	}
	if !slices.Equal(files, []string{"fake.qcow2", "logs/a.log"}) || len(m.Packages) != 2 || m.Packages[0].Name != "bash" {
		t.Errorf("manifest files %q, packages %+v", files, m.Packages)
	}
	if entries, _ := os.ReadDir(e.work); len(entries) != 0 {
		t.Errorf("the work root holds %v after a successful build, --keep-on-failure or not", entries)
	}
	for _, l := range []string{`msg="step start" build=fake step="provision[1] shell" at=r.yaml:6:5`,
		`msg="step done" build=fake step="provision[1] shell" at=r.yaml:6:5 duration=`} {
		if !strings.Contains(e.log.String(), l) {
			t.Errorf("the log lacks %q", l)
		}
	}
}

// A recipe step that fails stops the build there: later units do not run, the machine is
// killed, the error names the step, its place in the recipe and the exit status, and nothing is
// published. With --keep-on-failure the work dir stays, marked for sweeps to leave; without, it
// goes.
func TestFakeBuildFailingStep(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			e := newFakeBuild(t, func(o *Options) { o.KeepOnFailure = keep })
			e.guest.act = failOn("run sudo make-it-fail", fmt.Errorf("running \"sudo make-it-fail\": %w", &communicator.ExitError{Status: 3}))
			_, err := e.b.bake(context.Background())
			var se *StepError
			if !errors.As(err, &se) || se.Step != "provision[1] shell" || se.At != "r.yaml:6:5" {
				t.Fatalf("err = %v, want a StepError at provision[1] shell, r.yaml:6:5", err)
			}
			if want := `r.yaml:6:5: provision[1] shell failed: running "sudo make-it-fail": exit status 3`; err.Error() != want {
				t.Errorf("err = %q\nwant  %q", err, want)
			}
			var exit *communicator.ExitError
			if !errors.As(err, &exit) || exit.Status != 3 {
				t.Errorf("err = %v, want the exit status 3 in it", err)
			}
			if n := len(se.Steps); n != 7 || se.Steps[n-1].Step != "provision[1] shell" {
				t.Errorf("StepError.Steps = %+v, want the 7 units that ran, the failed one last", se.Steps)
			}
			if e.j.has("upload") || e.j.has("output") || e.j.has("shutdown") {
				t.Errorf("units after the failed one ran: %q", e.j.all())
			}
			if !e.j.has("kill fake-build") {
				t.Errorf("the machine was not killed: %q", e.j.all())
			}
			if entries, _ := os.ReadDir(e.out); len(entries) != 0 {
				t.Errorf("a failed build published %v", entries)
			}
			entries, _ := os.ReadDir(e.work)
			if !keep {
				if len(entries) != 0 {
					t.Errorf("the work root holds %v after a failed build without --keep-on-failure", entries)
				}
				return
			}
			if len(entries) != 1 || !entries[0].IsDir() {
				t.Fatalf("the work root holds %v, want the kept work dir alone (no lock file)", entries)
			}
			kept := filepath.Join(e.work, entries[0].Name())
			for _, f := range []string{keptMarker, "disk.qcow2", "seed.img", "console.log"} {
				if _, err := os.Stat(filepath.Join(kept, f)); err != nil {
					t.Errorf("the kept work dir lacks %s: %v", f, err)
				}
			}
			if removed, err := Sweep(context.Background(), slog.New(slog.DiscardHandler), e.work, e.out); err != nil || len(removed) != 0 {
				t.Errorf("a sweep removed %v (%v), want the kept work dir left alone", removed, err)
			}
			if !strings.Contains(e.log.String(), "kept the work dir of the failed build") {
				t.Error("the log does not say the work dir was kept")
			}
		})
	}
}

// Cancelling a build while a recipe step runs stops it there, says it was interrupted at that
// step, runs no later unit, kills the machine and removes the work dir.
func TestFakeBuildInterrupted(t *testing.T) {
	e := newFakeBuild(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.guest.act = func(ctx context.Context, action string) error {
		if action != "upload app.conf /etc/app.conf" {
			return nil
		}
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	_, err := e.b.bake(ctx)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "provision[2] file" || !strings.Contains(err.Error(), "interrupted") || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want an interruption at provision[2] file", err)
	}
	if e.j.has("reboot") || e.j.has("output") || !e.j.has("kill fake-build") {
		t.Errorf("journal %q: want no unit after provision[2], and the machine killed", e.j.all())
	}
	if entries, _ := os.ReadDir(e.work); len(entries) != 0 {
		t.Errorf("the work root holds %v after an interrupted build", entries)
	}
}

// The cleanups are bounded: a machine whose Kill never returns by itself holds them up only
// until the bound, and its error is joined into the build's, with the others'.
func TestFakeBuildCleanupBounded(t *testing.T) {
	e := newFakeBuild(t, func(o *Options) {
		o.Driver.(*fakeDriver).kill = func(ctx context.Context) error {
			<-ctx.Done()
			return fmt.Errorf("the machine is still there: %w", ctx.Err())
		}
	})
	e.guest.act = failOn("run sudo echo one", errors.New("boom"))
	e.guest.closeErr = errors.New("connection reset")
	started := time.Now()
	_, err := e.b.bake(context.Background())
	if took := time.Since(started); took > time.Second {
		t.Errorf("the build took %s to end with a 100 ms cleanup bound", took)
	}
	for _, want := range []string{"r.yaml:5:5: provision[0] shell failed: boom",
		"stop the build machine: the machine is still there: context deadline exceeded",
		"close SSH: connection reset"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v\nwant it to say %q", err, want)
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the cleanup's deadline in it", err)
	}
	// The work dir was registered first, so it is removed last, after the stuck machine.
	if entries, _ := os.ReadDir(e.work); len(entries) != 0 {
		t.Errorf("the work root holds %v", entries)
	}
}

// A machine that ends in the middle of a recipe step (its kernel panicked, say) fails that step
// at once with the machine's reason and its console, not when SSH keepalives give up on the
// connection it left hanging; nothing after the step runs and nothing is published.
func TestFakeBuildGuestDiesMidStep(t *testing.T) {
	e := newFakeBuild(t, nil)
	panicked := &hypervisor.GuestError{Reason: "the guest kernel panicked (seen on the serial console)", ConsoleTail: "Kernel panic - not syncing: sysrq triggered crash"}
	e.guest.act = func(ctx context.Context, action string) error {
		if action != "upload app.conf /etc/app.conf" {
			return nil
		}
		e.b.opts.Driver.(*fakeDriver).machine.Load().crash(panicked)
		select { // the session hangs, as SSH does over a dead guest, until keepalives give up
		case <-ctx.Done():
		case <-time.After(3 * time.Second):
		}
		return errors.New("ssh: connection lost")
	}
	started := time.Now()
	_, err := e.b.bake(context.Background())
	if took := time.Since(started); took > time.Second {
		t.Errorf("the build took %s to notice its machine had ended", took)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Step != "provision[2] file" || !errors.Is(err, panicked) || strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("err = %v\nwant provision[2] file failed with the guest's panic, not the lost connection", err)
	}
	if e.j.has("reboot") || e.j.has("output") {
		t.Errorf("journal %q: a unit ran after the machine ended", e.j.all())
	}
	if entries, _ := os.ReadDir(e.out); len(entries) != 0 {
		t.Errorf("the failed build published %v", entries)
	}
}

// Resume and skip on the fake driver: a build takes "booted" and a checkpoint after each step but
// the last; the same recipe is then up to date and starts nothing; a build whose last step
// changed restores the checkpoint after the step before it (in a machine started from its state,
// reconnecting with its keys), skips the steps it holds, runs the rest, and records which ran;
// without a driver that restores, or with --no-cache, nothing is checkpointed.
func TestFakeBuildResumes(t *testing.T) {
	dir := t.TempDir()
	withStore := func(o *Options) {
		s, err := images.Open(filepath.Join(dir, "images"))
		if err != nil {
			t.Fatal(err)
		}
		o.Images, o.Driver = s, restoringDriver{o.Driver.(*fakeDriver)}
	}
	same := func(r string) string { return r }
	e := newFakeBuildIn(t, dir, same, withStore)
	if _, err := e.b.bake(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.Join(e.j.all(), "\n"), "checkpoint\nresume"); n != 5 {
		t.Errorf("cold build: %d checkpoints, want 5 (booted, after provision[0] to [3], not after the last):\n%s", n, strings.Join(e.j.all(), "\n"))
	}
	e.b.ck.saving.Wait()
	cps, err := e.b.opts.Images.Checkpoints()
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, c := range cps {
		steps = append(steps, c.Step)
	}
	slices.Sort(steps)
	if want := []string{"booted", "provision[0] shell", "provision[1] shell", "provision[2] file", "provision[3] reboot"}; !slices.Equal(steps, want) {
		t.Errorf("checkpoints %q, want %q", steps, want)
	}

	// Nothing changed: up to date, no machine.
	e = newFakeBuildIn(t, dir, same, withStore)
	res, err := e.b.bake(context.Background())
	if err != nil || !res.UpToDate || len(e.j.all()) != 0 {
		t.Fatalf("the same build again: %+v, %v, journal %q; want up to date and nothing done", res, err, e.j.all())
	}

	// The last step changed: restored after provision[3], only provision[4] runs.
	e = newFakeBuildIn(t, dir, func(r string) string { return strings.Replace(r, "dst: logs/a.log", "dst: logs/b.log", 1) }, withStore)
	res, err = e.b.bake(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"restore fake-build from state after reboot",
		"dial ingot@127.0.0.1:2222",
		"run sudo date -u -s @",
		"download /var/log/a.log",
		"output if command -v dpkg-query",
		"output sudo cat /etc/machine-id",
		"run sudo umask 077; rm -rf /run/ingot-scan",
		"output cat /run/ingot-inventory/meta",
		"output cat /run/ingot-inventory/sums",
		"output cat /run/ingot-scan/found",
		"close",
		"shutdown fake-build",
		"close",
		"kill fake-build",
	}
	if got := e.j.all(); !matchPrefixes(got, want) {
		t.Errorf("journal:\n  %s\nwant (prefixes):\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	var ran, restored []string
	for _, s := range res.Manifest.Steps {
		if s.Restored {
			restored = append(restored, s.Step)
		} else {
			ran = append(ran, s.Step)
		}
	}
	if want := []string{"install", "provision[0] shell", "provision[1] shell", "provision[2] file", "provision[3] reboot"}; !slices.Equal(restored, want) {
		t.Errorf("restored %q, want %q", restored, want)
	}
	if !slices.Contains(ran, "provision[4] file") || !slices.Contains(ran, "connect") {
		t.Errorf("ran %q", ran)
	}
	if !strings.Contains(e.log.String(), "resuming after provision[3] reboot from checkpoint") {
		t.Errorf("the log does not say what the build resumed from:\n%s", e.log)
	}

	// --no-cache: a full build, no checkpoint taken or restored.
	e = newFakeBuildIn(t, dir, func(r string) string { return strings.Replace(r, "echo one", "echo uno", 1) }, func(o *Options) { withStore(o); o.NoCache = true })
	if _, err := e.b.bake(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.j.all(), "\n"); strings.Contains(got, "checkpoint") || strings.Contains(got, "restore") || !strings.HasPrefix(got, "start fake-build") {
		t.Errorf("--no-cache journal:\n%s", got)
	}
}
