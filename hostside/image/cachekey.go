package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// diskFormat names the rules that turn a source into a disk (Unpack, the rootfs options
// BuildDisk passes); change it when they change, and every cache key changes with it.
const diskFormat = "confguest disk cache v1\n"

// builderID is what else decides the disk's bytes: the mkfs.erofs binary (its SHA-256) and
// whether files keep their owners (Unpack chowns only as root).
func builderID() (string, error) {
	mkfs, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		return "", fmt.Errorf("mkfs.erofs not in PATH: install the Debian package erofs-utils: %w", err)
	}
	h, err := fileSHA256(mkfs)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", mkfs, err)
	}
	return fmt.Sprintf("mkfs.erofs %s euid0 %t\n", h, os.Geteuid() == 0), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// imageKey is the cache key of an image's disk: its layers' digests in order, as the
// manifest names them. The layers are content-addressed and BuildDisk checks every blob
// against its digest before it unpacks one, so one list of digests is one flattened tree;
// a tag or name, which can move, is no part of it. The image config (entrypoint, env) is
// not on the disk and not in the key.
func imageKey(img v1.Image) (string, error) {
	id, err := builderID()
	if err != nil {
		return "", err
	}
	layers, err := img.Layers()
	if err != nil {
		return "", fmt.Errorf("list layers: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s%simage %d\n", diskFormat, id, len(layers))
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return "", fmt.Errorf("layer %d digest: %w", i, err)
		}
		fmt.Fprintf(h, "%s\n", d)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// dirKey is the cache key of a directory's disk: a digest of everything mkfs.erofs takes
// from the tree as BuildDisk runs it. Every entry in lexical order with its path, type,
// permission bits, owner, size, device number, symlink target and, for a regular file, the
// SHA-256 of its content; a hard link names the first path of its inode, since erofs stores
// the link. Not in it, because the disk does not hold them: times (mkfs.erofs -T fixes
// them) and extended attributes (-x-1). A directory has no digest of its own to trust
// (a CRI snapshot's mount is just a tree), so the tree is read in full: the cost of a hit
// on a directory is one read and hash of its files, not a build. The tree must not change
// while its disk is built (a CRI rootfs does not before its container starts): the entry
// holds what the build read, under the key of what the digest read.
func dirKey(root string) (string, error) {
	key, _, err := dirKeyAndDevFiles(root)
	return key, err
}

// dirKeyAndDevFiles is dirKey, and also lists the device nodes, fifos and sockets under
// the tree's dev/, which a build leaves out (rootfs.WithoutDevSpecialFiles): a cache hit
// can say what it left out as a build does.
func dirKeyAndDevFiles(root string) (key string, devFiles []string, err error) {
	id, err := builderID()
	if err != nil {
		return "", nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s%sdir\n", diskFormat, id)
	inodes := map[[2]uint64]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", path)
		}
		fmt.Fprintf(h, "%q %o %d:%d %d %d", rel, uint32(fi.Mode()), st.Uid, st.Gid, fi.Size(), st.Rdev)
		switch fi.Mode().Type() {
		case fs.ModeDir:
		case fs.ModeSymlink:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, " -> %q", target)
		case 0:
			ino := [2]uint64{st.Dev, st.Ino}
			if first, ok := inodes[ino]; ok && st.Nlink > 1 {
				fmt.Fprintf(h, " = %q", first)
				break
			}
			inodes[ino] = rel
			if err := hashContent(h, path); err != nil {
				return err
			}
		default:
			if strings.HasPrefix(filepath.ToSlash(rel), "dev/") {
				devFiles = append(devFiles, rel)
			}
		}
		h.Write([]byte{'\n'})
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("digest of %s: %w", root, err)
	}
	return hex.EncodeToString(h.Sum(nil)), devFiles, nil
}

func hashContent(h hash.Hash, path string) error {
	sum, err := fileSHA256(path)
	if err != nil {
		return err
	}
	_, err = io.WriteString(h, " "+sum)
	return err
}

// isCacheKey reports whether s is a key this package makes (64 hex digits).
func isCacheKey(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 64 && err == nil && strings.ToLower(s) == s
}
