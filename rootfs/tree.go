package rootfs

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// entry is one file, directory, symlink or special file below the source
// root, as found by walkTree.
type entry struct {
	rel  string      // path relative to the root, OS separators
	mode fs.FileMode // type and permission bits as they will be stored
	size int64
	link string // symlink target, verbatim
	ino  inode
}

// tree is the checked listing of a source directory, in lexical order.
type tree struct {
	rootMode  fs.FileMode // of the source directory itself, as it will be stored
	rootIno   inode
	entries   []entry
	dataBytes int64     // file data, each hard-linked inode counted once
	listing   hash.Hash // digest of the listing, for the default erofs UUID
	skipped   []string  // special files under dev/ left out (WithoutDevSpecialFiles)
}

// uuid derives the erofs UUID from the listing (names, types, modes,
// sizes, symlink targets and, when preserved, owners; not file contents).
func (t *tree) uuid() string { return uuidFromDigest(t.listing.Sum(nil)) }

// walkTree lstats every entry below src (symlinks are never followed),
// opens every regular file once to prove it is readable, and refuses what
// Build does not store.
func walkTree(src string, o options) (*tree, error) {
	t := &tree{listing: sha256.New()}
	t.listing.Write([]byte(fsUUIDDomain))
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w: %w: make it readable by the user running the build, or remove it", path, ErrUnreadable, err)
		}
		if path == src {
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("%s: %w: %w", path, ErrUnreadable, err)
			}
			t.rootMode, t.rootIno = fi.Mode(), inodeOf(fi)
			if o.normalizePerms {
				t.rootMode = normalizedMode(t.rootMode)
			}
			fmt.Fprintf(t.listing, "%o", uint32(t.rootMode))
			if o.preserveOwners {
				fmt.Fprintf(t.listing, " %d:%d", t.rootIno.uid, t.rootIno.gid)
			}
			t.listing.Write([]byte{'\n'})
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("%s: %w: %w", path, ErrUnreadable, err)
		}
		rel, _ := filepath.Rel(src, path)
		e := entry{rel: rel, mode: fi.Mode(), ino: inodeOf(fi)}
		switch fi.Mode().Type() {
		case 0:
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("%s: %w: %w: make it readable by the user running the build, or remove it", path, ErrUnreadable, err)
			}
			f.Close()
			e.size = fi.Size()
			key := [2]uint64{e.ino.dev, e.ino.ino}
			if e.ino.nlink < 2 || !seen[key] {
				t.dataBytes += e.size
				seen[key] = true
			}
		case fs.ModeDir:
		case fs.ModeSymlink:
			// Stored verbatim: a target is resolved inside the guest's
			// root at run time, where "/" and ".." cannot leave it, and
			// is never followed while building.
			if e.link, err = os.Readlink(path); err != nil {
				return fmt.Errorf("%s: %w: %w", path, ErrUnreadable, err)
			}
		default:
			if !o.specialFiles && o.skipDev != nil && strings.HasPrefix(filepath.ToSlash(rel), "dev/") {
				t.skipped = append(t.skipped, rel)
				return nil
			}
			if !o.specialFiles {
				return fmt.Errorf("%s: %w: %s: images hold no device nodes, fifos or sockets (the guest's /dev is a devtmpfs, run-time fifos and sockets belong on tmpfs): remove it, or allow special files (WithSpecialFiles, mkrootfs -special-files) for container layers",
					path, ErrSpecialFile, kind(fi.Mode()))
			}
		}
		if o.normalizePerms {
			e.mode = normalizedMode(e.mode)
		}
		fmt.Fprintf(t.listing, "%q %o %d %q %d", e.rel, uint32(e.mode), e.size, e.link, e.ino.rdev)
		if o.preserveOwners {
			fmt.Fprintf(t.listing, " %d:%d", e.ino.uid, e.ino.gid)
		}
		t.listing.Write([]byte{'\n'})
		t.entries = append(t.entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("%s: %w: it has no files: check the path, or populate the tree first", src, ErrEmptyTree)
	}
	return t, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "irregular file"
}

// normalizedMode keeps the type and the setuid, setgid and sticky bits and
// replaces the permissions: 0755 for directories and files with any
// execute bit, 0644 for other files. Symlinks keep theirs (always 0777).
func normalizedMode(m fs.FileMode) fs.FileMode {
	special := m & (fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	switch {
	case m.Type() == fs.ModeSymlink:
		return m
	case m.IsDir() || m&0o111 != 0:
		return m.Type() | special | 0o755
	default:
		return m.Type() | special | 0o644
	}
}

// stageTree copies the listed tree from src to dst with the modes (and
// owners) the listing says; hard links stay hard links.
func stageTree(ctx context.Context, src, dst string, t *tree, o options) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return fmt.Errorf("stage tree: %w", err)
	}
	if o.preserveOwners {
		if err := os.Lchown(dst, int(t.rootIno.uid), int(t.rootIno.gid)); err != nil {
			return fmt.Errorf("stage tree: %w", err)
		}
	}
	if err := os.Chmod(dst, t.rootMode); err != nil {
		return fmt.Errorf("stage tree: %w", err)
	}
	first := map[[2]uint64]string{}
	for _, e := range t.entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		from, to := filepath.Join(src, e.rel), filepath.Join(dst, e.rel)
		var err error
		switch e.mode.Type() {
		case fs.ModeDir:
			err = os.Mkdir(to, 0o700)
		case 0:
			key := [2]uint64{e.ino.dev, e.ino.ino}
			if prev, ok := first[key]; ok && e.ino.nlink > 1 {
				if err := os.Link(prev, to); err != nil {
					return fmt.Errorf("stage hard link %s: %w", e.rel, err)
				}
				continue
			}
			first[key] = to
			err = copyFile(from, to)
		case fs.ModeSymlink:
			err = os.Symlink(e.link, to)
		default:
			err = mknod(to, e.mode, e.ino.rdev)
		}
		if err == nil && o.preserveOwners {
			err = os.Lchown(to, int(e.ino.uid), int(e.ino.gid))
		}
		if err == nil && e.mode.Type() != fs.ModeSymlink {
			err = os.Chmod(to, e.mode) // after chown, which clears setuid
		}
		if err != nil {
			return fmt.Errorf("stage %s with normalized permissions: %w", from, err)
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
