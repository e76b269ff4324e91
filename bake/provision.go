package bake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
)

// provisionName names the runner unit of step i of the recipe's provision list, and the log
// lines of its output: "provision[1] shell".
func provisionName(i int, s *recipes.Step) string {
	return fmt.Sprintf("provision[%d] %s", i, s.Kind)
}

// provision runs step i of the recipe's provision list: one unit of the runner, which names it
// and its place in the recipe when it fails. A failing command fails it with its exit status.
func (b *build) provision(ctx context.Context, i int, s *recipes.Step) error {
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
			if err := b.waits.track(func() error { return b.guest.Upload(ctx, sh.Script, remote, communicator.UploadOptions{Mode: 0o755}) }); err != nil {
				return fmt.Errorf("upload script %s: %w", sh.Script, err)
			}
			command = communicator.ShellQuote(remote) + "; rc=$?; rm -f " + communicator.ShellQuote(remote) + "; exit $rc"
		}
		cmd := communicator.Cmd{Command: command, Env: sh.Env, Sudo: sh.Sudo}
		var stdin []byte
		cmd.SecretEnv, stdin = b.stepSecrets(sh)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		return b.runStreaming(ctx, provisionName(i, s), cmd, false)
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
			return b.waits.track(func() error { return b.guest.Download(ctx, f.Src, dst) })
		}
		opt, err := uploadOptions(f)
		if err != nil {
			return err
		}
		return b.waits.track(func() error { return b.guest.Upload(ctx, f.Src, f.Dst, opt) })
	case "reboot":
		timeout := s.Reboot.Timeout
		if timeout == 0 {
			timeout = 10 * time.Minute
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := b.waits.track(func() error { return b.guest.Reboot(rctx, "") }); err != nil {
			return b.withConsole(err)
		}
		return nil
	case "wait_cloud_init":
		return b.waitCloudInit(ctx)
	default:
		return fmt.Errorf("unknown provisioner %q", s.Kind)
	}
}

// runStreaming runs a command with its output streamed to the log line by line, under step.
// With ownScript, the command is ingot's own (generalize), which marks what an operator should
// see with a "warning: " line: such lines are logged at warning level. A recipe's output is
// logged as it comes, whatever it says.
func (b *build) runStreaming(ctx context.Context, step string, cmd communicator.Cmd, ownScript bool) error {
	log := b.log.With("step", step)
	level := func(line string) slog.Level {
		if ownScript && strings.HasPrefix(line, "warning: ") {
			return slog.LevelWarn
		}
		return slog.LevelInfo
	}
	stdout := communicator.LineWriter(func(line string) { log.Log(ctx, level(line), line, "stream", "stdout") })
	stderr := communicator.LineWriter(func(line string) { log.Log(ctx, level(line), line, "stream", "stderr") })
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := b.waits.track(func() error { return b.guest.Run(ctx, cmd) })
	stdout.Close()
	stderr.Close()
	return err
}

// uploadOptions applies the recipe's upload defaults (docs/recipes.md): a file gets 0644 and a
// tree keeps its local modes unless mode/dir_mode say otherwise; the owner is root:root, since
// provisioning runs as root and the build user is deleted by generalize.
func uploadOptions(f *recipes.File) (communicator.UploadOptions, error) {
	opt := communicator.UploadOptions{Owner: f.Owner}
	if opt.Owner == "" {
		opt.Owner = "root:root"
	}
	var err error
	if opt.Mode, err = parseMode(f.Mode); err != nil {
		return opt, err
	}
	if opt.DirMode, err = parseMode(f.DirMode); err != nil {
		return opt, err
	}
	if opt.Mode == 0 {
		fi, err := os.Stat(f.Src)
		if err != nil {
			return opt, fmt.Errorf("uploading %s: %w", f.Src, err)
		}
		if !fi.IsDir() {
			opt.Mode = 0o644
		}
	}
	return opt, nil
}

// parseMode reads an octal mode; "" is 0, which keeps the local mode.
func parseMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("mode %q is not an octal file mode", s)
	}
	return os.FileMode(m), nil
}

// packagesScript lists the guest's packages (name, version, architecture, and the license its
// copyright file states, when the package manager knows one), then the distribution
// (os-release ID and VERSION_ID), the two parts separated by a "---" line. Debian's licenses come
// from the first License: line of each machine-readable /usr/share/doc/PKG/copyright, read by
// one awk (awk is Essential in Debian), which keeps tabs (some files write "License:<TAB>MIT")
// out of the tab-separated line: a shell loop forking sed and head for each package took
// 12.6 s of a TCG guest's time for its 198 packages, awk 0.2 s.
const packagesScript = `if command -v dpkg-query >/dev/null; then
	dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' | awk -F '\t' '{
		f = "/usr/share/doc/" $1 "/copyright"; l = ""
		while ((getline line < f) > 0) if (sub(/^License:[ \t]*/, "", line)) { l = line; break }
		close(f)
		gsub(/[\t\r]/, " ", l)
		printf "%s\t%s\t%s\t%s\n", $1, $2, $3, l
	}'
elif command -v rpm >/dev/null; then
	rpm -qa --qf '%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\t%{LICENSE}\n'
fi
echo ---
. /etc/os-release 2>/dev/null && printf '%s\t%s\n' "${ID:-}" "${VERSION_ID:-}"
true`

// inventory records the guest's packages and distribution for the manifest (and its SBOM), and
// who the build machine is (for the test boots), before generalize removes anything.
func (b *build) inventory(ctx context.Context) error {
	var out []byte
	err := b.waits.track(func() (err error) {
		out, err = b.guest.Output(ctx, communicator.Cmd{Command: packagesScript})
		return err
	})
	if err != nil {
		return fmt.Errorf("list the guest's packages: %w", err)
	}
	b.packages, b.os = parsePackages(string(out))
	return b.waits.track(func() error { return b.readBuildMachine(ctx) })
}

// parsePackages reads packagesScript's output.
func parsePackages(out string) ([]manifest.Package, *manifest.OS) {
	pkgs, osPart, _ := strings.Cut(out, "---\n")
	var list []manifest.Package
	for _, line := range strings.Split(strings.TrimSpace(pkgs), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 2 || f[0] == "" {
			continue
		}
		p := manifest.Package{Name: f[0], Version: f[1]}
		if len(f) > 2 {
			p.Arch = f[2]
		}
		if len(f) > 3 {
			p.License = strings.TrimSpace(f[3])
		}
		list = append(list, p)
	}
	var os *manifest.OS
	if id, version, ok := strings.Cut(strings.TrimSpace(osPart), "\t"); ok && id != "" {
		os = &manifest.OS{ID: id, VersionID: version}
	}
	return list, os
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
	# What the build user owns outside its home and mail would be left to a deleted uid, which
	# the image's next account gets: give it to root and say so (issue 19).
	# Its group too, when it is the user's own (userdel deletes that as well).
	owned="-uid $(id -u "$user")"
	[ "$(id -gn "$user")" = "$user" ] && owned="$owned -o -gid $(id -g "$user")"
	home=$(getent passwd "$user" | cut -d: -f6)
	find / -xdev \( -path "${home:-/nonexistent}" -o -path "/var/mail/$user" -o -path "/var/spool/mail/$user" \) -prune \
		-o \( $owned \) -print | while IFS= read -r f; do
		echo "warning: $f was owned by the build user $user, whom generalize deletes; it is now root:root" >&2
		chown -h root:root "$f"
	done
	rm -f /etc/sudoers.d/90-cloud-init-users
	userdel -f -r "$user" 2>/dev/null || userdel -f "$user"
fi
sync
fstrim -av || true
`

// generalize runs the generalize script, which ends by trimming free space so outputs hold only
// data; then, in the same sudo (generalize deletes the build user and its sudo rule), the file
// inventory of the image as it now is (inventoryScript), which fetchInventory reads back.
func (b *build) generalize(ctx context.Context) error {
	// The inventory and the scan read no stdin: it carried the scan's needles and the known
	// files, which the prologue has kept.
	inventory := "sh -c " + communicator.ShellQuote(inventoryScript) + " </dev/null"
	prologue, stdin := b.scanPrologue()
	if !b.r.Generalize.Enabled {
		// Still trim: free space should not end up in the outputs.
		cmd := prologue + "{ fstrim -av </dev/null || true; } && " + inventory + scanEpilogue()
		if err := b.runStreaming(ctx, "trim", communicator.Cmd{Command: cmd, Sudo: true, Stdin: stdin}, true); err != nil {
			return fmt.Errorf("trim, list the image's files and scan them: %w", err)
		}
		return errors.Join(b.fetchInventory(ctx), b.fetchScan(ctx))
	}
	keep := strings.Join(b.r.Generalize.Keep, " ")
	cmd := prologue + "sh -c " + communicator.ShellQuote(generalizeScript) + " generalize " + communicator.ShellQuote(b.r.SSH.User) + " " + communicator.ShellQuote(keep) + " </dev/null && " + inventory + scanEpilogue()
	err := b.runStreaming(ctx, "generalize", communicator.Cmd{Command: cmd, Sudo: true, Stdin: stdin}, true)
	var exit *communicator.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("generalize script, file inventory or secret scan: %w", err)
	}
	if err != nil {
		return err
	}
	return errors.Join(b.fetchInventory(ctx), b.fetchScan(ctx))
}
