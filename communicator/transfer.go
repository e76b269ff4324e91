package communicator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pkg/sftp"
)

// Transfers go through a private staging directory under /tmp because sftp runs as the build
// user and cannot sudo: files are staged there and moved into place with `sudo -n install` /
// `sudo -n cp -a`, or copied there by root and chowned to the build user before being fetched.
// The staging directory is made by mktemp -d (mode 0700), so nobody else can read or swap what
// passes through it.

// stagingName is the entry inside the staging directory that holds the payload.
const stagingName = "payload"

// cleanupTimeout bounds removing the staging directory, which also runs after ctx has ended.
const cleanupTimeout = 30 * time.Second

type staging struct {
	dir, user, group string
}

func (s staging) payload() string { return path.Join(s.dir, stagingName) }

// stage creates the remote staging directory and learns the build user's name and group.
func (c *Client) stage(ctx context.Context) (staging, error) {
	out, err := c.Output(ctx, Cmd{Command: "mktemp -d /tmp/ingot.XXXXXXXXXX && id -un && id -gn"})
	if err != nil {
		return staging{}, fmt.Errorf("creating remote staging directory: %w", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 3 || !strings.HasPrefix(f[0], "/tmp/ingot.") {
		return staging{}, fmt.Errorf("creating remote staging directory: unexpected output %q", out)
	}
	return staging{dir: f[0], user: f[1], group: f[2]}, nil
}

// unstage removes the staging directory as root (it may hold root-owned or read-only entries).
// It runs even when ctx has ended, with its own short deadline.
func (c *Client) unstage(ctx context.Context, s staging) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := c.Output(cctx, Cmd{Command: "rm -rf " + ShellQuote(s.dir), Sudo: true}); err != nil {
		return fmt.Errorf("removing remote staging directory %s: %w", s.dir, err)
	}
	return nil
}

// sftpClient opens an sftp session that is closed when ctx ends (pkg/sftp has no contexts).
func (c *Client) sftpClient(ctx context.Context) (*sftp.Client, func(), error) {
	conn, err := c.current()
	if err != nil {
		return nil, nil, err
	}
	// Concurrent writes: io.Copy into an sftp.File then pipelines 64 requests instead of waiting
	// for each 32 KiB write's reply, which is what makes sftp slower than scp.
	sc, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true))
	if err != nil {
		return nil, nil, fmt.Errorf("starting sftp: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = sc.Close() })
	return sc, func() { stop(); _ = sc.Close() }, nil
}

// UploadOptions say how uploaded entries land in the guest. Zero values keep the local
// permission bits; an empty Owner means the build user (the caller picks the recipe's default).
type UploadOptions struct {
	// Mode is the permission of an uploaded file, or of every regular file in an uploaded tree.
	Mode os.FileMode
	// DirMode is the permission of every directory in an uploaded tree, its top included.
	// Kept apart from Mode because one mode cannot suit both: 0644 on a directory takes away
	// the x bit that lets anyone enter it.
	DirMode os.FileMode
	// Owner is "user" or "user:group" for everything written.
	Owner string
}

// Upload copies local (a file or a directory tree) to remote in the guest, as root.
//
// For a file, remote is the destination file (parents created). For a tree, remote is the
// destination directory (created; existing contents are merged, and its own mode and owner
// become the local top directory's). Only permission bits are carried (no setuid/setgid/
// sticky). Modes and ownership are set in the private staging directory before anything is
// moved into place, so no entry is ever visible in the guest with the wrong ones.
func (c *Client) Upload(ctx context.Context, local, remote string, opt UploadOptions) (err error) {
	fi, err := os.Stat(local)
	if err != nil {
		return fmt.Errorf("uploading %s: %w", local, err)
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return fmt.Errorf("uploading %s: not a regular file or directory", local)
	}
	st, err := c.stage(ctx)
	if err != nil {
		return fmt.Errorf("uploading %s: %w", local, err)
	}
	defer func() { err = errors.Join(err, c.unstage(ctx, st)) }()

	sc, done, err := c.sftpClient(ctx)
	if err != nil {
		return fmt.Errorf("uploading %s: %w", local, err)
	}
	mode := opt.Mode
	if fi.IsDir() {
		err = putTree(sc, local, st.payload(), opt.Mode, opt.DirMode)
	} else {
		if mode == 0 {
			mode = fi.Mode().Perm()
		}
		err = putFile(sc, local, st.payload(), mode.Perm())
	}
	done()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		return fmt.Errorf("uploading %s to staging: %w", local, err)
	}

	owner := opt.Owner
	if owner == "" {
		owner = st.user + ":" + st.group
	}
	u, g, _ := strings.Cut(owner, ":")
	var script string
	if fi.IsDir() {
		// chown -R does not follow symlinks; cp -a as root keeps the modes and owners set here.
		script = fmt.Sprintf("chown -R %[3]s %[2]s && mkdir -p %[1]s && cp -a %[2]s/. %[1]s/",
			ShellQuote(remote), ShellQuote(st.payload()), ShellQuote(owner))
	} else {
		script = fmt.Sprintf("install -D -m %04o -o %s", mode.Perm(), ShellQuote(u))
		if g != "" {
			script += " -g " + ShellQuote(g)
		}
		script += " " + ShellQuote(st.payload()) + " " + ShellQuote(remote)
	}
	if _, err := c.Output(ctx, Cmd{Command: script, Sudo: true}); err != nil {
		return fmt.Errorf("uploading %s: installing into %s: %w", local, remote, err)
	}
	return nil
}

func putFile(sc *sftp.Client, local, remote string, perm os.FileMode) error {
	src, err := os.Open(local)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := sc.OpenFile(remote, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("creating %s: %w", remote, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		_ = dst.Close()
		return fmt.Errorf("writing %s: %w", remote, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", remote, err)
	}
	if err := sc.Chmod(remote, perm); err != nil {
		return fmt.Errorf("chmod %s: %w", remote, err)
	}
	return nil
}

// putTree copies a local tree. fileMode and dirMode, when non-zero, replace the local permission
// bits of regular files and of directories. Directory modes are set last, so a read-only
// directory does not stop its own contents from being written.
func putTree(sc *sftp.Client, local, remote string, fileMode, dirMode os.FileMode) error {
	type dirPerm struct {
		path string
		perm os.FileMode
	}
	var dirs []dirPerm
	err := filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(local, p)
		if err != nil {
			return err
		}
		dst := path.Join(remote, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := sc.Mkdir(dst); err != nil {
				return fmt.Errorf("mkdir %s: %w", dst, err)
			}
			perm := info.Mode().Perm()
			if dirMode != 0 {
				perm = dirMode.Perm()
			}
			dirs = append(dirs, dirPerm{dst, perm})
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := sc.Symlink(target, dst); err != nil {
				return fmt.Errorf("symlink %s: %w", dst, err)
			}
		case info.Mode().IsRegular():
			perm := info.Mode().Perm()
			if fileMode != 0 {
				perm = fileMode.Perm()
			}
			return putFile(sc, p, dst, perm)
		default:
			return fmt.Errorf("%s: cannot upload %s", p, info.Mode().Type())
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(dirs) {
		if err := sc.Chmod(d.path, d.perm); err != nil {
			return fmt.Errorf("chmod %s: %w", d.path, err)
		}
	}
	return nil
}

// Download copies remote (a file or a directory tree, readable by root) to local.
//
// The remote side is copied by root into the staging directory and chowned to the build user,
// so root-only files work. A file replaces local atomically (temporary file + rename), keeping
// the remote permission bits. A tree is assembled in a temporary directory next to local and
// renamed into place; local must not exist yet.
func (c *Client) Download(ctx context.Context, remote, local string) (err error) {
	if _, err := os.Lstat(local); err == nil {
		if fi, _ := os.Stat(local); fi != nil && fi.IsDir() {
			return fmt.Errorf("downloading %s: destination %s is an existing directory", remote, local)
		}
	}
	st, err := c.stage(ctx)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", remote, err)
	}
	defer func() { err = errors.Join(err, c.unstage(ctx, st)) }()

	owner := st.user + ":" + st.group
	script := fmt.Sprintf("cp -a %[1]s %[2]s && chown -R %[3]s %[2]s && chmod -R u+rX %[2]s",
		ShellQuote(remote), ShellQuote(st.payload()), ShellQuote(owner))
	if _, err := c.Output(ctx, Cmd{Command: script, Sudo: true}); err != nil {
		return fmt.Errorf("downloading %s: copying to staging: %w", remote, err)
	}

	sc, done, err := c.sftpClient(ctx)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", remote, err)
	}
	defer done()
	fi, err := sc.Lstat(st.payload())
	if err != nil {
		return fmt.Errorf("downloading %s: %w", remote, err)
	}
	switch {
	case fi.IsDir():
		err = getTree(sc, st.payload(), local)
	case fi.Mode().IsRegular():
		err = getFile(sc, st.payload(), local, fi.Mode().Perm())
	default:
		err = fmt.Errorf("not a regular file or directory (%s)", fi.Mode().Type())
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		return fmt.Errorf("downloading %s to %s: %w", remote, local, err)
	}
	return nil
}

// getFile streams remote into a temporary file next to local and renames it into place.
func getFile(sc *sftp.Client, remote, local string, perm os.FileMode) error {
	src, err := sc.Open(remote)
	if err != nil {
		return err
	}
	defer src.Close()
	return writeFileAtomic(local, perm, func(w io.Writer) error {
		if _, err := io.Copy(w, src); err != nil {
			return fmt.Errorf("reading %s: %w", remote, err)
		}
		return nil
	})
}

// getTree copies a remote tree into a temporary sibling of local, then renames it into place.
func getTree(sc *sftp.Client, remote, local string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(local), "."+filepath.Base(local)+".tmp-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
		}
	}()
	type dirPerm struct {
		path string
		perm os.FileMode
	}
	var dirs []dirPerm
	w := sc.Walk(remote)
	for w.Step() {
		if err := w.Err(); err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(w.Path(), remote), "/")
		dst := filepath.Join(tmp, filepath.FromSlash(rel))
		fi := w.Stat()
		switch {
		case fi.IsDir():
			if rel != "" {
				if err := os.Mkdir(dst, 0o700); err != nil {
					return err
				}
			}
			dirs = append(dirs, dirPerm{dst, fi.Mode().Perm()})
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := sc.ReadLink(w.Path())
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := getFile(sc, w.Path(), dst, fi.Mode().Perm()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: cannot download %s", w.Path(), fi.Mode().Type())
		}
	}
	for _, d := range slices.Backward(dirs) {
		if err := os.Chmod(d.path, d.perm); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, local); err != nil {
		return err
	}
	ok = true
	return nil
}
