package conformance

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one file of an image layer.
type entry struct {
	typ      byte // tar.TypeReg, TypeDir, TypeSymlink or TypeLink
	mode     int64
	uid, gid int
	data     []byte
	link     string // symlink target, or the path a hard link names
}

// tree is the content of one image layer: slash-separated paths relative to the root.
type tree struct {
	files map[string]entry
}

func newTree() *tree { return &tree{files: map[string]entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (t *tree) has(p string) bool {
	_, ok := t.files[clean(p)]
	return ok
}

// dir adds directories (mode 0755, root-owned) with their parents.
func (t *tree) dir(paths ...string) {
	for _, p := range paths {
		for d := clean(p); d != "." && d != ""; d = path.Dir(d) {
			if _, ok := t.files[d]; !ok {
				t.files[d] = entry{typ: tar.TypeDir, mode: 0o755}
			}
		}
	}
}

// file adds a regular file and its parent directories.
func (t *tree) file(p string, mode int64, data []byte) {
	p = clean(p)
	t.dir(path.Dir(p))
	t.files[p] = entry{typ: tar.TypeReg, mode: mode, data: data}
}

// symlink adds a symbolic link p -> target.
func (t *tree) symlink(p, target string) {
	p = clean(p)
	t.dir(path.Dir(p))
	t.files[p] = entry{typ: tar.TypeSymlink, mode: 0o777, link: target}
}

// hardlink adds p as a hard link to the regular file target (both in this tree).
func (t *tree) hardlink(p, target string) {
	p = clean(p)
	t.dir(path.Dir(p))
	t.files[p] = entry{typ: tar.TypeLink, mode: 0o755, link: clean(target)}
}

// addHostFile copies the file src of this machine (following symlinks) to dst.
func (t *tree) addHostFile(dst, src string, mode int64) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("image file %s: %w", dst, err)
	}
	t.file(dst, mode, b)
	return nil
}

// tar writes the tree as a tar stream: sorted paths (hard links last), root-owned unless set, zero times, so
// the same content always gives the same layer digest.
func (t *tree) tar() ([]byte, error) {
	names := make([]string, 0, len(t.files))
	for n := range t.files {
		names = append(names, n)
	}
	// Hard links come last: a tar reader needs the file a link names before the link.
	sort.Slice(names, func(i, j int) bool {
		li, lj := t.files[names[i]].typ == tar.TypeLink, t.files[names[j]].typ == tar.TypeLink
		if li != lj {
			return lj
		}
		return names[i] < names[j]
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := t.files[n]
		h := &tar.Header{Typeflag: e.typ, Name: n, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = e.link
			if e.typ == tar.TypeLink {
				if target, ok := t.files[e.link]; !ok || target.typ != tar.TypeReg {
					return nil, fmt.Errorf("layer: hard link %s names %s, which is no regular file of the layer", n, e.link)
				}
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layer is the tree as an image layer.
func (t *tree) layer() (v1.Layer, error) {
	b, err := t.tar()
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
