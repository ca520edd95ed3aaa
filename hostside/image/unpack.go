package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Unpack writes the flattened filesystem of img (layers applied in order, whiteouts
// honoured) into dir, which must exist and be empty. Every write goes through an os.Root
// on dir, so an entry named "../x" or reached through a symlink pointing outside is refused
// rather than written. Device nodes and fifos are skipped: the container runtime provides
// /dev. Ownership is applied when running as root. The root of the tree gets mode 0755,
// as the roots containerd and Docker unpack have (a layer's entry for "/" is ignored): the
// disk of an image is then the one the shim builds from containerd's snapshot of it, so a
// statement signed for one holds for the other.
func Unpack(ctx context.Context, img v1.Image, dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	return unpackTar(ctx, rc, dir)
}

type dirMode struct {
	name string
	mode fs.FileMode
}

func unpackTar(ctx context.Context, r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer root.Close()
	chown := os.Geteuid() == 0
	var dirs []dirMode // modes applied last, so read-only directories can be filled first
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layers: %w", err)
		}
		name, err := cleanName(h.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
			return fmt.Errorf("%s: create parent: %w", h.Name, wrapEscape(err))
		}
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s: %w", h.Name, wrapEscape(err))
			}
			dirs = append(dirs, dirMode{name, mode})
		case tar.TypeReg:
			root.Remove(name)
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("%s: %w", h.Name, wrapEscape(err))
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: write: %w", h.Name, err)
			}
			if chown { // before chmod: chown clears setuid and setgid
				if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
					return fmt.Errorf("%s: chown: %w", h.Name, err)
				}
			}
			if err := root.Chmod(name, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return fmt.Errorf("%s: chmod: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			root.Remove(name)
			// The target is stored as is: it is resolved inside the container, and our own
			// writes never follow it out of the root.
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("%s: symlink: %w", h.Name, wrapEscape(err))
			}
		case tar.TypeLink:
			target, err := cleanName(h.Linkname)
			if err != nil {
				return err
			}
			root.Remove(name)
			if err := root.Link(target, name); err != nil {
				return fmt.Errorf("%s: hard link to %s: %w", h.Name, h.Linkname, wrapEscape(err))
			}
		default:
			continue // devices, fifos: skipped
		}
		if chown && h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeLink { // a link shares its target's inode
			if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
				return fmt.Errorf("%s: chown: %w", h.Name, err)
			}
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := root.Chmod(d.name, d.mode&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return fmt.Errorf("%s: chmod: %w", d.name, err)
		}
	}
	return nil
}

// cleanName makes a tar entry name relative to the root and refuses ones that climb out.
func cleanName(n string) (string, error) {
	c := path.Clean("/" + n)
	if strings.Contains(n, "\x00") {
		return "", fmt.Errorf("entry %q: %w", n, ErrUnsafePath)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q: %w", n, ErrUnsafePath)
		}
	}
	if c == "/" {
		return ".", nil
	}
	return strings.TrimPrefix(c, "/"), nil
}

// wrapEscape marks os.Root's refusal to leave the root as ErrUnsafePath.
func wrapEscape(err error) error {
	if err != nil && strings.Contains(err.Error(), "path escapes from parent") {
		return errors.Join(ErrUnsafePath, err)
	}
	return err
}
