package bake

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/manifest"
)

// The file inventory of the final image (issue 15) is read in the guest, as root, right after
// generalize (in the same sudo: generalize deletes the build user and its sudo rule), by GNU
// find and sha256sum, into /run (a tmpfs: nothing of it stays in the image), and fetched from
// there. The guest's own kernel reads every filesystem it mounts (ext4, xfs, btrfs, vfat) and
// the image is as it will be but for what power-off writes. See docs/drift.md for the choice
// against reading the shut-down disk on the host.

// inventoryDir is where the guest leaves the inventory for ingot to fetch.
const inventoryDir = "/run/ingot-inventory"

// knownFile is where the generalize command keeps, from its stdin, the files whose checksums
// ingot already has (knownFiles): find's line for each, NUL-terminated, in byte order.
const knownFile = scanDir + "/known"

// inventoryScript lists every file of the image's filesystems, those the guest mounts and the
// other partitions of its root disk: find's fields NUL-separated (type, mode, uid, gid, size,
// path, link target, and "inode ctime", which with size and path says whether a file is the one
// an earlier build hashed), and sha256sum -z of the regular files (no escaping of odd names).
// One walk writes both lists (find -fprintf). A regular file whose inode, ctime, size and path
// are a record of knownFile is not read: its content has not changed since an earlier build on
// the same base hashed it (writing a file, or setting its times, sets its ctime to the clock's
// now), and reading the disk is most of the inventory's time under TCG. The known records are
// taken out by sort and comm (0.5 s for 13,000 files under TCG; grep -F with as many patterns
// took up to 8 s); out of order, comm would only hash more, never skip a file it should read.
// One sha256sum runs per vCPU at a time: under TCG each vCPU is a host thread. Each sha256sum
// writes a file of its own (its buffered writes could split a line if they shared one), joined
// afterwards. Pseudo filesystems (proc, sysfs, tmpfs, …) are not on the image and are skipped
// with -xdev from each real mount point.
const inventoryScript = `set -eu
cd / # generalize has deleted the build user's home, the session's working directory
t0=$(date +%s%N)
d=` + inventoryDir + `
known=` + knownFile + `
rm -rf "$d"; mkdir -m 0755 "$d"
fstypes=ext2,ext3,ext4,xfs,btrfs,vfat
mounts=$(findmnt -rn -o TARGET -t $fstypes | sort -u)
# Partitions of the root's disk that the system does not mount (an ESP without an fstab line,
# say) are mounted read-only, without replaying a journal, and listed as /[partN]/….
disk=$(lsblk -no PKNAME "$(findmnt -no SOURCE /)" | head -n1)
for p in $(lsblk -lnpo NAME,TYPE "/dev/$disk" 2>/dev/null | awk '$2 == "part" { print $1 }'); do
	findmnt -rn -S "$p" >/dev/null && continue
	fs=$(lsblk -no FSTYPE "$p")
	case ",$fstypes," in *",$fs,"*) ;; *) continue ;; esac
	case $fs in ext3|ext4) o=ro,noload ;; xfs) o=ro,norecovery ;; *) o=ro ;; esac
	m="$d/mnt/part$(cat "/sys/class/block/${p##*/}/partition")"
	mkdir -p "$m" && mount -t "$fs" -o "$o" "$p" "$m" && mounts="$mounts $m"
done
# shellcheck disable=SC2086
find $mounts -xdev -fprintf "$d/meta" '%y\0%#m\0%U\0%G\0%s\0%p\0%l\0%i %C@\0' -type f -fprintf "$d/files" '%i %C@ %s %p\0'
if [ -s "$known" ]; then
	LC_ALL=C sort -z "$d/files" > "$d/sorted"
	LC_ALL=C comm -z -23 --nocheck-order "$d/sorted" "$known" > "$d/tohash"
	rm -f "$d/sorted"
else
	cp "$d/files" "$d/tohash"
fi
rm -f "$known"
sed -z 's/^[^ ]* [^ ]* [^ ]* //' "$d/tohash" | xargs -0 -r -n 256 -P "$(nproc)" sh -c 'sha256sum -z "$@" > "$0.$$" || true' "$d/part"
find "$d" -name 'part.*' -exec cat {} + > "$d/sums"
rm -f "$d"/part.*
for m in "$d"/mnt/*; do [ -d "$m" ] && { umount "$m" || true; }; done
chmod 0644 "$d/meta" "$d/sums"
all=$(tr -cd '\0' < "$d/files" | wc -c)
todo=$(tr -cd '\0' < "$d/tohash" | wc -c)
rm -f "$d/files" "$d/tohash"
echo "file inventory: $(tr -cd '\0' < "$d/sums" | wc -c) files hashed in $(( ($(date +%s%N) - t0) / 1000000 )) ms; $((all - todo)) more unchanged since an earlier build on this base" >&2
`

// fetchInventory reads the inventory inventoryScript left in the guest.
func (b *build) fetchInventory(ctx context.Context) error {
	meta, err := b.guest.Output(ctx, communicator.Cmd{Command: "cat " + inventoryDir + "/meta"})
	if err != nil {
		return fmt.Errorf("fetch the file inventory: %w", err)
	}
	sums, err := b.guest.Output(ctx, communicator.Cmd{Command: "cat " + inventoryDir + "/sums"})
	if err != nil {
		return fmt.Errorf("fetch the file inventory's checksums: %w", err)
	}
	entries, next, err := parseInventory(meta, sums, b.known)
	if err != nil {
		return fmt.Errorf("read the file inventory: %w", err)
	}
	b.files = entries
	b.log.Info("file inventory read", "files", len(entries))
	if b.keepsFileSums() {
		if err := b.opts.Images.PutFileSums(ctx, b.rootLayer, next); err != nil {
			b.log.Warn("warning: could not keep the file checksums for the next build; it will read every file again", "err", err)
		}
	}
	return nil
}

// keepsFileSums says whether the build uses and keeps file checksums for its base layer: it has
// an image store and a base in it, and was not told --no-cache.
func (b *build) keepsFileSums() bool {
	return b.opts.Images != nil && !b.opts.NoCache && b.rootLayer != ""
}

// knownFiles reads the file checksums kept for the build's base into b.known, and returns the
// guest's knownFile: the record inventoryScript's find prints for each file, NUL-terminated,
// sorted as LC_ALL=C sort sorts (bytewise), for comm.
func (b *build) knownFiles() []byte {
	b.known = nil
	if !b.keepsFileSums() {
		return nil
	}
	known, err := b.opts.Images.FileSums(b.rootLayer)
	if err != nil {
		b.log.Warn("warning: kept file checksums unusable; the file inventory reads every file", "err", err)
		return nil
	}
	b.known = known
	var buf bytes.Buffer
	for _, key := range slices.Sorted(maps.Keys(known)) {
		buf.WriteString(key)
		buf.WriteByte(0)
	}
	return buf.Bytes()
}

// imagePath is where a listed file is on the image: a file of a partition the system does not
// mount (inventoryScript mounted it under inventoryDir/mnt/partN) is /[partN]/….
func imagePath(p string) string {
	rest, ok := strings.CutPrefix(p, inventoryDir+"/mnt/")
	if !ok {
		return p
	}
	part, sub, _ := strings.Cut(rest, "/")
	return path.Clean("/[" + part + "]/" + sub)
}

// findTypes maps find's %y to manifest.Entry types.
var findTypes = map[string]string{"f": "file", "d": "dir", "l": "symlink", "c": "char", "b": "block", "p": "fifo", "s": "socket"}

// parseInventory reads inventoryScript's output: meta, eight NUL-terminated fields a file, and
// sums, "HASH  PATH" NUL-terminated; known holds the checksums of the files the guest was told
// not to read, by hashKey. A path listed twice (a mount point, seen from its parent and as a
// start) keeps its last entry, the mounted filesystem's root. A regular file without a checksum
// went away between the listing and the hashing and is left out; more than a few such files
// mean sha256sum failed, which is an error. Entries come out by path, with the checksums of all
// regular files by hashKey: the known files of the next build.
func parseInventory(meta, sums []byte, known map[string]string) ([]manifest.Entry, map[string]string, error) {
	hashes := map[string]string{}
	for rec := range bytes.SplitSeq(bytes.TrimSuffix(sums, []byte{0}), []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		if len(rec) < 67 || (string(rec[64:66]) != "  " && string(rec[64:66]) != " *") {
			return nil, nil, fmt.Errorf("sha256sum line %q: want HASH  PATH", rec)
		}
		hashes[string(rec[66:])] = string(rec[:64])
	}
	fields := bytes.Split(bytes.TrimSuffix(meta, []byte{0}), []byte{0})
	if len(meta) == 0 {
		fields = nil
	}
	if len(fields)%8 != 0 {
		return nil, nil, fmt.Errorf("%d fields: not whole records of 8", len(fields))
	}
	byPath := map[string]manifest.Entry{}
	next := map[string]string{}
	var missing []string
	for i := 0; i < len(fields); i += 8 {
		f := fields[i : i+8]
		typ, ok := findTypes[string(f[0])]
		if !ok {
			return nil, nil, fmt.Errorf("%s: unknown file type %q", f[5], f[0])
		}
		mode := strings.TrimLeft(string(f[1]), "0")
		mode = strings.Repeat("0", max(0, 4-len(mode))) + mode
		uid, err1 := strconv.Atoi(string(f[2]))
		gid, err2 := strconv.Atoi(string(f[3]))
		size, err3 := strconv.ParseInt(string(f[4]), 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || len(mode) != 4 || strings.Trim(mode, "01234567") != "" {
			return nil, nil, fmt.Errorf("%s: bad record %q", f[5], bytes.Join(f, []byte(" ")))
		}
		raw := string(f[5])
		e := manifest.Entry{Path: imagePath(raw), Type: typ, Mode: mode, UID: uid, GID: gid, Size: size}
		switch typ {
		case "symlink":
			e.Target = string(f[6])
		case "file":
			key := hashKey(string(f[7]), size, raw)
			e.SHA256 = hashes[raw]
			if e.SHA256 == "" {
				e.SHA256 = known[key]
			}
			if e.SHA256 == "" {
				// Gone between the listing and the hashing (a service's temporary file): it
				// is not in the image either.
				missing = append(missing, e.Path)
				continue
			}
			next[key] = e.SHA256
		}
		byPath[e.Path] = e
	}
	out := make([]manifest.Entry, 0, len(byPath))
	for _, e := range byPath {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b manifest.Entry) int { return strings.Compare(a.Path, b.Path) })
	if len(missing) > len(out)/100+10 {
		return nil, nil, fmt.Errorf("%d regular files have no checksum (%s, …): sha256sum could not read them", len(missing), strings.Join(missing[:min(5, len(missing))], ", "))
	}
	return out, next, nil
}

// hashKey is a regular file's line in inventoryScript's list of files: "INODE CTIME SIZE PATH".
func hashKey(inodeCtime string, size int64, path string) string {
	return inodeCtime + " " + strconv.FormatInt(size, 10) + " " + path
}
