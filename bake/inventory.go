package bake

import (
	"bytes"
	"context"
	"fmt"
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

// inventoryScript lists every file of the image's filesystems, those the guest mounts and the
// other partitions of its root disk: find's
// fields NUL-separated (type, mode, uid, gid, size, path, link target), and sha256sum -z of the
// regular files (no escaping of odd names), one sha256sum per vCPU at a time: hashing is most
// of the time, and under TCG each vCPU is a host thread. Each sha256sum writes a file of its
// own (its buffered writes could split a line if they shared one), joined afterwards. Pseudo filesystems (proc, sysfs, tmpfs, …) are not
// on the image and are skipped with -xdev from each real mount point.
const inventoryScript = `set -eu
cd / # generalize has deleted the build user's home, the session's working directory
t0=$(date +%s%N)
d=` + inventoryDir + `
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
find $mounts -xdev -printf '%y\0%#m\0%U\0%G\0%s\0%p\0%l\0' > "$d/meta"
# shellcheck disable=SC2086
find $mounts -xdev -type f -print0 | xargs -0 -r -n 256 -P "$(nproc)" sh -c 'sha256sum -z "$@" > "$0.$$" || true' "$d/part"
find "$d" -name 'part.*' -exec cat {} + > "$d/sums"
rm -f "$d"/part.*
for m in "$d"/mnt/*; do [ -d "$m" ] && { umount "$m" || true; }; done
chmod 0644 "$d/meta" "$d/sums"
echo "file inventory: $(tr -cd '\0' < "$d/sums" | wc -c) files hashed in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
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
	entries, err := parseInventory(meta, sums)
	if err != nil {
		return fmt.Errorf("read the file inventory: %w", err)
	}
	b.files = entries
	b.log.Info("file inventory read", "files", len(entries))
	return nil
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

// parseInventory reads inventoryScript's output: meta, seven NUL-terminated fields a file, and
// sums, "HASH  PATH" NUL-terminated. A path listed twice (a mount point, seen from its parent
// and as a start) keeps its last entry, the mounted filesystem's root. A regular file without a
// checksum went away between the listing and the hashing and is left out; more than a few such
// files mean sha256sum failed, which is an error. Entries come out by path.
func parseInventory(meta, sums []byte) ([]manifest.Entry, error) {
	hashes := map[string]string{}
	for rec := range bytes.SplitSeq(bytes.TrimSuffix(sums, []byte{0}), []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		if len(rec) < 67 || (string(rec[64:66]) != "  " && string(rec[64:66]) != " *") {
			return nil, fmt.Errorf("sha256sum line %q: want HASH  PATH", rec)
		}
		hashes[imagePath(string(rec[66:]))] = string(rec[:64])
	}
	fields := bytes.Split(bytes.TrimSuffix(meta, []byte{0}), []byte{0})
	if len(meta) == 0 {
		fields = nil
	}
	if len(fields)%7 != 0 {
		return nil, fmt.Errorf("%d fields: not whole records of 7", len(fields))
	}
	byPath := map[string]manifest.Entry{}
	var missing []string
	for i := 0; i < len(fields); i += 7 {
		f := fields[i : i+7]
		typ, ok := findTypes[string(f[0])]
		if !ok {
			return nil, fmt.Errorf("%s: unknown file type %q", f[5], f[0])
		}
		mode := strings.TrimLeft(string(f[1]), "0")
		mode = strings.Repeat("0", max(0, 4-len(mode))) + mode
		uid, err1 := strconv.Atoi(string(f[2]))
		gid, err2 := strconv.Atoi(string(f[3]))
		size, err3 := strconv.ParseInt(string(f[4]), 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || len(mode) != 4 || strings.Trim(mode, "01234567") != "" {
			return nil, fmt.Errorf("%s: bad record %q", f[5], bytes.Join(f, []byte(" ")))
		}
		e := manifest.Entry{Path: imagePath(string(f[5])), Type: typ, Mode: mode, UID: uid, GID: gid, Size: size}
		switch typ {
		case "symlink":
			e.Target = string(f[6])
		case "file":
			e.SHA256 = hashes[e.Path]
			if e.SHA256 == "" {
				// Gone between the listing and the hashing (a service's temporary file): it
				// is not in the image either.
				missing = append(missing, e.Path)
				continue
			}
		}
		byPath[e.Path] = e
	}
	out := make([]manifest.Entry, 0, len(byPath))
	for _, e := range byPath {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b manifest.Entry) int { return strings.Compare(a.Path, b.Path) })
	if len(missing) > len(out)/100+10 {
		return nil, fmt.Errorf("%d regular files have no checksum (%s, …): sha256sum could not read them", len(missing), strings.Join(missing[:min(5, len(missing))], ", "))
	}
	return out, nil
}
