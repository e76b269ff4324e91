package bake

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/recipes"
)

// provision runs the recipe's steps in order; a failing step stops the build, naming its recipe
// line and exit status.
func (b *build) provision(ctx context.Context) error {
	for i, s := range b.r.Provision {
		name := fmt.Sprintf("provision[%d] %s", i, s.Kind)
		log := b.log.With("step", name)
		started := time.Now()
		log.Info("provisioner start", "at", s.Pos.String())
		if err := b.provisionStep(ctx, i, s); err != nil {
			return fmt.Errorf("%s: %s failed: %w", s.Pos, name, err)
		}
		log.Info("provisioner done", "duration", time.Since(started).Round(time.Millisecond))
	}
	return nil
}

func (b *build) provisionStep(ctx context.Context, i int, s recipes.Step) error {
	prefix := fmt.Sprintf("provision[%d]", i)
	switch s.Kind {
	case "shell":
		sh := s.Shell
		if sh.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, sh.Timeout)
			defer cancel()
		}
		command := sh.Inline
		if sh.Script != "" {
			// Upload the script and run it: its own shebang decides the interpreter.
			remote := fmt.Sprintf("/tmp/ingot-%s-%d-%s", b.id, i, filepath.Base(sh.Script))
			if err := b.waits.track(func() error { return b.client.Upload(ctx, sh.Script, remote, 0o755, "") }); err != nil {
				return fmt.Errorf("upload script %s: %w", sh.Script, err)
			}
			command = communicator.ShellQuote(remote) + "; rc=$?; rm -f " + communicator.ShellQuote(remote) + "; exit $rc"
		}
		return b.runStreaming(ctx, prefix, communicator.Cmd{Command: command, Env: sh.Env, Sudo: sh.Sudo})
	case "file":
		f := s.File
		if f.Direction == "download" {
			// A relative destination is part of the outputs: it is published with them.
			dst := f.Dst
			if !filepath.IsAbs(dst) {
				dst = filepath.Join(b.workDir, "downloads", dst)
				b.downloads = append(b.downloads, f.Dst)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return err
			}
			return b.waits.track(func() error { return b.client.Download(ctx, f.Src, dst) })
		}
		mode, err := parseMode(f.Mode)
		if err != nil {
			return err
		}
		return b.waits.track(func() error { return b.client.Upload(ctx, f.Src, f.Dst, mode, f.Owner) })
	case "reboot":
		timeout := s.Reboot.Timeout
		if timeout == 0 {
			timeout = 10 * time.Minute
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := b.waits.track(func() error { return b.client.Reboot(rctx, "") }); err != nil {
			return b.withConsole(err)
		}
		return nil
	case "wait_cloud_init":
		return b.waitCloudInit(ctx)
	default:
		return fmt.Errorf("unknown provisioner %q", s.Kind)
	}
}

// runStreaming runs a command with its output streamed to the log line by line, prefixed.
func (b *build) runStreaming(ctx context.Context, prefix string, cmd communicator.Cmd) error {
	log := b.log.With("step", prefix)
	stdout := communicator.LineWriter(func(line string) { log.Info(line, "stream", "stdout") })
	stderr := communicator.LineWriter(func(line string) { log.Info(line, "stream", "stderr") })
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := b.waits.track(func() error { return b.client.Run(ctx, cmd) })
	stdout.Close()
	stderr.Close()
	return err
}

func parseMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0o644, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("mode %q is not an octal file mode", s)
	}
	return os.FileMode(m), nil
}

// Package is one installed package in the image.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// inventory records the guest's packages for the manifest, before generalize removes anything.
func (b *build) inventory(ctx context.Context) error {
	var out []byte
	err := b.waits.track(func() (err error) {
		out, err = b.client.Output(ctx, communicator.Cmd{Command: `if command -v dpkg-query >/dev/null; then dpkg-query -W -f '${Package}\t${Version}\n'; elif command -v rpm >/dev/null; then rpm -qa --qf '%{NAME}\t%{VERSION}-%{RELEASE}\n'; fi`})
		return err
	})
	if err != nil {
		return fmt.Errorf("list the guest's packages: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if name, version, ok := strings.Cut(line, "\t"); ok {
			b.packages = append(b.packages, Package{Name: name, Version: version})
		}
	}
	return nil
}

// generalizeScript turns the build guest into a template, as virt-sysprep's defaults do. It runs
// as root in the guest; each part is best-effort on distributions that lack a tool, and the whole
// runs under `set -u` so a typo is an error, not a silent skip.
const generalizeScript = `set -u
user=$1; keep=$2
has() { case " $keep " in *" $1 "*) return 0;; esac; return 1; }
# machine-id: empty (not absent), so systemd makes a new one at first boot
if ! has machine-id; then
	truncate -s 0 /etc/machine-id
	rm -f /var/lib/dbus/machine-id
	[ -d /var/lib/dbus ] && ln -s /etc/machine-id /var/lib/dbus/machine-id
fi
has ssh-host-keys || rm -f /etc/ssh/ssh_host_*
if ! has logs; then
	find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
	find /var/log -type f -exec truncate -s 0 {} +
	rm -rf /var/log/journal/*
fi
if ! has package-cache; then
	command -v apt-get >/dev/null && apt-get clean
	rm -rf /var/lib/apt/lists/* /var/cache/dnf/* /var/cache/yum/*
fi
if ! has cloud-init && command -v cloud-init >/dev/null; then
	cloud-init clean --logs --seed
fi
has shell-history || rm -f /root/.bash_history /home/*/.bash_history /root/.lesshst /home/*/.lesshst
rm -rf /tmp/* /var/tmp/* 2>/dev/null
# the build user, its key and its sudo rule: -f because our own session is still open
if ! has build-user; then
	rm -f /etc/sudoers.d/90-cloud-init-users
	userdel -f -r "$user" 2>/dev/null || userdel -f "$user"
fi
sync
fstrim -av || true
`

// generalize runs the generalize script, then trims free space so outputs hold only data.
func (b *build) generalize(ctx context.Context) error {
	if !b.r.Generalize.Enabled {
		// Still trim: free space should not end up in the outputs.
		return b.runStreaming(ctx, "trim", communicator.Cmd{Command: "fstrim -av || true", Sudo: true})
	}
	keep := strings.Join(b.r.Generalize.Keep, " ")
	cmd := "sh -c " + communicator.ShellQuote(generalizeScript) + " generalize " + communicator.ShellQuote(b.r.SSH.User) + " " + communicator.ShellQuote(keep)
	err := b.runStreaming(ctx, "generalize", communicator.Cmd{Command: cmd, Sudo: true})
	var exit *communicator.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("generalize script: %w", err)
	}
	return err
}
