package bake

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/recipes"
	"github.com/ingot-build/ingot/secrets"
)

// resolveSecrets reads the values of the recipe's secrets: from ingot's environment (getenv) or
// from files. It runs before anything starts, so a missing value fails the build at once, at
// the line that declares it.
func resolveSecrets(r *recipes.Recipe, getenv func(string) (string, bool)) (*secrets.Set, error) {
	var list []secrets.Secret
	var errs []error
	for _, name := range r.SecretNames() {
		s := r.Secrets[name]
		where := fmt.Sprintf("%s: secrets.%s", s.Pos, name)
		switch {
		case s.Env != "":
			v, ok := getenv(s.Env)
			if !ok || v == "" {
				errs = append(errs, fmt.Errorf("%s: the environment variable %s is not set; export it before running ingot (its value is never logged)", where, s.Env))
				continue
			}
			list = append(list, secrets.Secret{Name: name, Value: []byte(v)})
		case s.File != "":
			v, err := os.ReadFile(s.File)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: read the secret's file: %w", where, err))
				continue
			}
			list = append(list, secrets.Secret{Name: name, Value: v})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	set, err := secrets.New(list...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.File, err)
	}
	return set, nil
}

// stepSecrets is what a shell step is handed: the secrets it exports, and the one on its stdin.
func (b *build) stepSecrets(sh *recipes.Shell) (env map[string][]byte, stdin []byte) {
	for _, name := range sh.Secrets {
		v, _ := b.secrets.Value(name) // recipes checked the names
		if env == nil {
			env = map[string][]byte{}
		}
		env[name] = v
	}
	if sh.Stdin != "" {
		stdin, _ = b.secrets.Value(sh.Stdin)
	}
	return env, stdin
}

// maskKept rewrites the text logs of a kept work dir (the console captures) with the secrets'
// values masked: --keep-on-failure keeps them for a person to read, never a value.
func (b *build) maskKept() error {
	if b.secrets.Len() == 0 {
		return nil
	}
	return filepath.WalkDir(b.workDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".log") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if masked := b.secrets.MaskBytes(data); !bytes.Equal(masked, data) {
			return os.WriteFile(p, masked, 0o600)
		}
		return nil
	})
}

// scanDir is where the guest-side half of the scan works: in /run, a tmpfs, so the values it is
// handed never touch the image's disk.
const scanDir = "/run/ingot-scan"

// scanScript is the guest-side half of the secret scan, run as root after generalize and the
// file inventory: it lists the files the build wrote or changed (a ctime after $1, when the
// build user's key was installed at the first boot) that hold a secret's value (the lines of
// scanDir/in: NAME BASE64, taken from stdin before generalize ran) or match a credential
// pattern (scanDir/p.NAME), one "secret|pattern<TAB>NAME<TAB>PATH" line each in scanDir/found.
// The values are removed before it ends; /run is gone at power-off anyway.
const scanScript = `set -u
export LC_ALL=C
t0=$(date +%s%N)
d=` + scanDir + `
cd /
since=$1
n=0
: > "$d/all"
while read -r name b64; do
	n=$((n+1))
	printf %s "$b64" | base64 -d > "$d/s.$n"
	printf '%s\n' "$name" > "$d/name.$n"
	{ cat "$d/s.$n"; echo; } >> "$d/all"
done < "$d/in"
touch -d "@$since" "$d/ref"
fstypes=ext2,ext3,ext4,xfs,btrfs,vfat
# shellcheck disable=SC2046
find $(findmnt -rn -o TARGET -t $fstypes | sort -u) -xdev -type f -cnewer "$d/ref" > "$d/files"
: > "$d/found"
if [ "$n" -gt 0 ]; then
	tr '\n' '\0' < "$d/files" | xargs -0 -r grep -l -F -f "$d/all" -- 2>/dev/null | while IFS= read -r f; do
		i=0
		while [ "$i" -lt "$n" ]; do
			i=$((i+1))
			grep -q -F -f "$d/s.$i" -- "$f" && printf 'secret\t%s\t%s\n' "$(cat "$d/name.$i")" "$f" >> "$d/found"
		done
	done
fi
cat "$d"/p.* > "$d/patterns"
tr '\n' '\0' < "$d/files" | xargs -0 -r grep -l -E -f "$d/patterns" -- 2>/dev/null | while IFS= read -r f; do
	for p in "$d"/p.*; do
		grep -q -E -f "$p" -- "$f" && printf 'pattern\t%s\t%s\n' "${p##*/p.}" "$f" >> "$d/found"
	done
done
rm -f "$d/in" "$d/all" "$d"/s.* "$d"/name.*
chmod 0755 "$d"; chmod 0644 "$d/found"
echo "secret scan: $(wc -l < "$d/files") files the build wrote, $(wc -l < "$d/found") findings, in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
`

// scanPrologue starts the generalize command, and returns what the command gets on stdin: the
// scan's needles (scanNeedles), a line each, then the inventory's known files (knownFiles). The
// prologue keeps the first lines, as many as there are needles, in scanDir/in and the rest in
// knownFile (nothing in generalize or the inventory can read them from stdin then; read takes a
// pipe a byte at a time, so the two parts split exactly), writes the credential patterns there,
// and notes when the build user's key was installed, before generalize deletes it: the files
// changed after are the build's.
func (b *build) scanPrologue() (prologue string, stdin io.Reader) {
	needles := b.scanNeedles()
	stdin = io.MultiReader(bytes.NewReader(needles), bytes.NewReader(b.knownFiles()))
	var s strings.Builder
	fmt.Fprintf(&s, "umask 077; rm -rf %[1]s; mkdir -p %[1]s && { i=0; while [ $i -lt %[2]d ] && IFS= read -r l; do printf '%%s\\n' \"$l\"; i=$((i+1)); done > %[1]s/in; cat > %[3]s; } && ",
		scanDir, bytes.Count(needles, []byte{'\n'}), knownFile)
	for _, p := range secrets.Patterns() {
		fmt.Fprintf(&s, "printf '%%s\\n' %s > %s/p.%s && ", communicator.ShellQuote(p.ERE), scanDir, p.Name)
	}
	fmt.Fprintf(&s, "since=$(stat -c %%Y \"$(getent passwd %s | cut -d: -f6)/.ssh/authorized_keys\" 2>/dev/null || echo 0) && ", communicator.ShellQuote(b.r.SSH.User))
	return s.String(), stdin
}

// scanEpilogue ends the generalize command with the guest-side scan.
func scanEpilogue() string {
	return " && sh -c " + communicator.ShellQuote(scanScript) + ` scan "$since" </dev/null`
}

// scanNeedles is what the guest-side scan gets on stdin: each needle that fits on one line, as
// NAME BASE64. grep -F takes a line per pattern, so a value of several lines (a key) is left
// to the disk scan, which finds it but cannot name its file.
func (b *build) scanNeedles() []byte {
	var buf bytes.Buffer
	for _, n := range b.secrets.Needles() {
		if bytes.ContainsAny(n.Bytes, "\r\n") {
			continue
		}
		fmt.Fprintf(&buf, "%s %s\n", n.Secret, base64.StdEncoding.EncodeToString(n.Bytes))
	}
	return buf.Bytes()
}

// fetchScan reads what the guest-side scan found.
func (b *build) fetchScan(ctx context.Context) error {
	out, err := b.guest.Output(ctx, communicator.Cmd{Command: "cat " + scanDir + "/found"})
	if err != nil {
		return fmt.Errorf("fetch the secret scan's findings: %w", err)
	}
	b.scanFound = nil
	for line := range strings.Lines(string(out)) {
		kind, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		name, path, ok := strings.Cut(rest, "\t")
		if !ok {
			continue
		}
		f := finding{Path: path}
		if kind == "secret" {
			f.Secret = name
		} else {
			f.Pattern = name
		}
		b.scanFound = append(b.scanFound, f)
	}
	return nil
}

// finding is one thing the secret scan found: a secret or a pattern, in a file or (Path "")
// elsewhere on the disk, at Offset.
type finding struct {
	Secret  string
	Pattern string
	Path    string
	Offset  int64
	Count   int
}

func (f finding) String() string {
	what := "secret " + f.Secret
	if f.Pattern != "" {
		what = "credential pattern " + f.Pattern
	}
	if f.Path != "" {
		return what + " in " + f.Path
	}
	return fmt.Sprintf("%s in no file of the image the scan could name, %d time(s), first at byte %d of the disk: the blocks of a file that was deleted without being scrubbed, which the trim did not discard (it drops whole clusters only); or, for a value of several lines, a file anywhere", what, f.Count, f.Offset)
}

// allowedBy returns the first secret_scan.allow entry that accepts f: every field it gives
// matches (a path glob never matches a finding outside any file).
func allowedBy(f finding, allow []recipes.ScanAllow) (recipes.ScanAllow, bool) {
	for _, a := range allow {
		if a.Secret != "" && a.Secret != f.Secret || a.Pattern != "" && a.Pattern != f.Pattern {
			continue
		}
		if a.Path != "" {
			if ok, _ := doublestar.Match(a.Path, f.Path); f.Path == "" || !ok {
				continue
			}
		}
		return a, true
	}
	return recipes.ScanAllow{}, false
}

// ScanError is a build whose disk holds a secret or a credential: nothing is published.
type ScanError struct {
	Findings []string
}

func (e *ScanError) Error() string {
	return fmt.Sprintf("the image holds what it must not (%d finding(s)):\n  %s\nremove it in the step that wrote it (shred -u a file that held a value, or keep such files in /run, which is never on disk), or accept it with secret_scan: { allow: [ { …, reason: WHY } ] } (docs/secrets.md)",
		len(e.Findings), strings.Join(e.Findings, "\n  "))
}

// scan is the pipeline's scan unit: on the shut-down disk, each secret's bytes in whatever the
// build wrote (files and free space); with what the guest-side scan found in the files the build
// wrote (each secret, each credential pattern), minus what secret_scan.allow accepts. A finding
// fails the build before anything is converted.
func (b *build) scan(ctx context.Context) error {
	found := slices.Clone(b.scanFound)
	if b.secrets.Len() > 0 {
		started := time.Now()
		f := secrets.NewFinder(b.secrets)
		n, err := disk.ReadWritten(ctx, b.diskPath, "qcow2", b.base, func(off int64, p []byte) error {
			f.Write(off, p)
			return nil
		})
		if err != nil {
			return fmt.Errorf("read the disk for the secret scan: %w", err)
		}
		secs := time.Since(started).Seconds()
		b.log.Info("scanned what the build wrote to its disk for its secrets", "bytes", n, "secrets", b.secrets.Len(),
			"seconds", fmt.Sprintf("%.1f", secs), "MB/s", fmt.Sprintf("%.0f", float64(n)/1e6/max(secs, 1e-3)))
		for _, h := range f.Hits() {
			if slices.ContainsFunc(found, func(g finding) bool { return g.Secret == h.Secret }) {
				continue // named by its file already
			}
			found = append(found, finding{Secret: h.Secret, Offset: h.Offset, Count: h.Count})
		}
	}
	var bad []string
	for _, f := range found {
		if a, ok := allowedBy(f, b.r.SecretScan.Allow); ok {
			b.log.Info("secret scan: allowed by the recipe", "finding", f.String(), "at", a.Pos.String(), "reason", a.Reason)
			continue
		}
		bad = append(bad, f.String())
	}
	if len(bad) > 0 {
		return &ScanError{Findings: bad}
	}
	b.log.Info("secret scan: nothing found", "secrets", b.secrets.Len(), "patterns", len(secrets.Patterns()))
	return nil
}

// checkScanAllow reports each secret_scan.allow entry naming a pattern that does not exist.
func checkScanAllow(r *recipes.Recipe) []error {
	var errs []error
	names := secrets.PatternNames()
	for i, a := range r.SecretScan.Allow {
		if a.Pattern != "" && !slices.Contains(names, a.Pattern) {
			pos := a.Pos
			if p, ok := r.PosOf(fmt.Sprintf("secret_scan.allow[%d].pattern", i)); ok {
				pos = p
			}
			errs = append(errs, fmt.Errorf("%s: secret_scan.allow[%d].pattern: %q is no credential pattern; the patterns are %s", pos, i, a.Pattern, strings.Join(names, ", ")))
		}
	}
	return errs
}
