// Package image turns container images into root filesystem disks for the guest, and checks
// the guest image itself against its manifest before boot.
//
// A container rootfs comes from a plain directory, an OCI image layout, a `docker save`
// archive, or a registry; images are read with go-containerregistry, their layers flattened
// with whiteouts applied (mutate.Extract), and the result unpacked under an os.Root so that
// no entry can be written outside the target directory. The directory then becomes an erofs
// image with a dm-verity tree through the rootfs package.
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"confguest/rootfs"
)

// Kind says where a container rootfs comes from.
type Kind string

// Source kinds.
const (
	Dir           Kind = "dir"
	OCILayout     Kind = "oci"
	DockerArchive Kind = "docker-archive"
	Registry      Kind = "registry"
)

// Source is a container rootfs: Ref is a directory, an OCI layout directory, a docker save
// archive, or an image reference, by Kind.
type Source struct {
	Kind Kind
	Ref  string
}

func (s Source) String() string { return string(s.Kind) + ":" + s.Ref }

// Platform is the only platform the guest runs.
var Platform = v1.Platform{OS: "linux", Architecture: "amd64"}

type options struct {
	remote []remote.Option
	rootfs []rootfs.Option
	note   func(string)
	cache  *Cache
}

// Option configures Load and BuildDisk.
type Option func(*options)

// WithRemoteOptions passes options (authentication, transport) to registry pulls.
func WithRemoteOptions(opts ...remote.Option) Option {
	return func(o *options) { o.remote = append(o.remote, opts...) }
}

// WithRootfsOptions passes options to rootfs.Build.
func WithRootfsOptions(opts ...rootfs.Option) Option {
	return func(o *options) { o.rootfs = append(o.rootfs, opts...) }
}

// WithNote gives BuildDisk a function for one-line notes about what it left out.
func WithNote(note func(line string)) Option {
	return func(o *options) { o.note = note }
}

// WithCache has BuildDisk take the disk from c, or build it into c, instead of building it
// at the image path each time; the image path is then a hard link to the cache entry (a
// copy across filesystems). Ignored with WithRootfsOptions, whose options the cache key
// cannot name.
func WithCache(c *Cache) Option {
	return func(o *options) { o.cache = c }
}

// Load opens the image of a non-directory source and checks that its layers are all there
// and match their digests.
func Load(ctx context.Context, src Source, opts ...Option) (v1.Image, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	img, err := open(ctx, src, o)
	if err != nil {
		return nil, err
	}
	if err := checkLayers(ctx, src, img); err != nil {
		return nil, err
	}
	return img, nil
}

// open opens the image of a non-directory source without reading its layers.
func open(ctx context.Context, src Source, o options) (v1.Image, error) {
	var img v1.Image
	var err error
	switch src.Kind {
	case OCILayout:
		img, err = loadLayout(src.Ref)
	case DockerArchive:
		img, err = loadArchive(src.Ref)
	case Registry:
		img, err = loadRemote(ctx, src.Ref, o.remote)
	case Dir:
		return nil, fmt.Errorf("%s: a directory is used as is, not loaded: %w", src.Ref, ErrSource)
	default:
		return nil, fmt.Errorf("source kind %q: want dir, oci, docker-archive or registry: %w", src.Kind, ErrSource)
	}
	if err != nil {
		return nil, err
	}
	return img, nil
}

func loadLayout(dir string) (v1.Image, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout (no index.json): %w: %w", dir, ErrSource, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w: %w", dir, ErrSource, err)
	}
	img, err := pickImage(idx, dir)
	if err != nil {
		return nil, err
	}
	return img, nil
}

// pickImage finds the linux/amd64 image in idx, descending into nested indexes.
func pickImage(idx v1.ImageIndex, where string) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: read index: %w: %w", where, ErrSource, err)
	}
	var found []v1.Descriptor
	for _, d := range m.Manifests {
		if d.Platform == nil || d.Platform.Satisfies(Platform) {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("%s: no %s image among %d manifests: %w", where, Platform, len(m.Manifests), ErrSource)
	}
	d := found[0]
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: open index %s: %w: %w", where, d.Digest, ErrSource, err)
		}
		return pickImage(child, where)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: open image %s: %w: %w", where, d.Digest, ErrSource, err)
	}
	if _, err := img.Manifest(); err != nil {
		return nil, fmt.Errorf("%s: image manifest %s: %w: %w", where, d.Digest, ErrSource, err)
	}
	return img, nil
}

func loadArchive(path string) (v1.Image, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("docker archive %s: %w: %w", path, ErrSource, err)
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return nil, fmt.Errorf("read docker archive %s (made by docker save of one image?): %w: %w", path, ErrSource, err)
	}
	if _, err := img.Manifest(); err != nil {
		return nil, fmt.Errorf("docker archive %s: %w: %w", path, ErrSource, err)
	}
	return img, nil
}

func loadRemote(ctx context.Context, ref string, opts []remote.Option) (v1.Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w: %w", ref, ErrSource, err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithPlatform(Platform)}, opts...)
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w: %w", ref, ErrSource, err)
	}
	return img, nil
}

// checkLayers makes sure every layer blob exists and matches its digest, before anything is
// unpacked. Local layouts and archives are not verified by the library on read.
func checkLayers(ctx context.Context, src Source, img v1.Image) error {
	if _, err := img.ConfigFile(); err != nil {
		return fmt.Errorf("%s: image config: %w: %w", src, ErrSource, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("%s: list layers: %w: %w", src, ErrSource, err)
	}
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		want, err := l.Digest()
		if err != nil {
			return fmt.Errorf("%s: layer %d digest: %w: %w", src, i, ErrSource, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("%s: layer %d (%s): %w: %w", src, i, want, ErrSource, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: read layer %d (%s): %w: %w", src, i, want, ErrSource, err)
		}
		got := "sha256:" + hex.EncodeToString(h.Sum(nil))
		if want.Algorithm == "sha256" && got != want.String() {
			return fmt.Errorf("%s: layer %d: %w: manifest says %s, blob hashes to %s: the image is corrupt, export or pull it again",
				src, i, ErrDigest, want, got)
		}
	}
	return nil
}

// Disk is a container rootfs disk built by BuildDisk.
type Disk struct {
	Path   string
	Verity rootfs.Params
	// Config is the image's run configuration (entrypoint, cmd, env, working directory);
	// empty for a directory source.
	Config v1.Config
}

// BuildDisk turns src into an erofs + dm-verity image at imagePath, unpacking images in a
// temporary directory under workDir that is removed afterwards. WithCache takes the disk
// from a cache of disks keyed by the source's content (an image's layer digests, a
// directory's tree digest) when it has it.
func BuildDisk(ctx context.Context, src Source, workDir, imagePath string, opts ...Option) (Disk, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	ropts := append([]rootfs.Option{rootfs.WithPreservedOwnership()}, o.rootfs...)
	if o.rootfs != nil {
		o.cache = nil
	}
	if src.Kind == Dir {
		st, err := os.Stat(src.Ref)
		if err != nil {
			return Disk{}, fmt.Errorf("rootfs directory %s: %w: %w", src.Ref, ErrSource, err)
		}
		if !st.IsDir() {
			return Disk{}, fmt.Errorf("rootfs directory %s: not a directory: %w", src.Ref, ErrSource)
		}
		// A root made by debootstrap has device nodes in dev/; the container gets its own
		// /dev (an image, unpacked, has none: Unpack skips them).
		noted := false
		leftOut := func(paths []string) {
			noted = true
			if o.note != nil && len(paths) > 0 {
				o.note(fmt.Sprintf("left out %d device nodes, fifos and sockets under %s/dev (%s): the container gets its own /dev",
					len(paths), src.Ref, abbreviate(paths, 3)))
			}
		}
		ropts = append(ropts, rootfs.WithoutDevSpecialFiles(leftOut))
		build := func(ctx context.Context, path string) (rootfs.Params, error) {
			p, err := rootfs.Build(ctx, src.Ref, path, ropts...)
			if err != nil {
				return p, fmt.Errorf("build disk from %s: %w", src.Ref, err)
			}
			return p, nil
		}
		var devFiles []string
		p, err := o.cached(ctx, func() (key string, err error) {
			key, devFiles, err = dirKeyAndDevFiles(src.Ref)
			return key, err
		}, imagePath, build)
		if err != nil {
			return Disk{}, err
		}
		if !noted {
			// A cache hit: the build that made the entry left these out.
			leftOut(devFiles)
		}
		return Disk{Path: imagePath, Verity: p}, nil
	}
	img, err := open(ctx, src, o)
	if err != nil {
		return Disk{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Disk{}, fmt.Errorf("%s: image config: %w: %w", src, ErrSource, err)
	}
	build := func(ctx context.Context, path string) (rootfs.Params, error) {
		if err := checkLayers(ctx, src, img); err != nil {
			return rootfs.Params{}, err
		}
		tmp, err := os.MkdirTemp(workDir, "rootfs-")
		if err != nil {
			return rootfs.Params{}, fmt.Errorf("unpack %s: %w", src, err)
		}
		defer os.RemoveAll(tmp)
		if err := Unpack(ctx, img, tmp); err != nil {
			return rootfs.Params{}, fmt.Errorf("unpack %s: %w", src, err)
		}
		p, err := rootfs.Build(ctx, tmp, path, ropts...)
		if err != nil {
			return rootfs.Params{}, fmt.Errorf("build disk from %s: %w", src, err)
		}
		return p, nil
	}
	p, err := o.cached(ctx, func() (string, error) { return imageKey(img) }, imagePath, build)
	if err != nil {
		return Disk{}, err
	}
	return Disk{Path: imagePath, Verity: p, Config: cf.Config}, nil
}

// cached runs build at imagePath, or without a cache; with one, it takes the disk of the
// source's key from the cache, building it there on a miss.
func (o options) cached(ctx context.Context, key func() (string, error), imagePath string, build func(context.Context, string) (rootfs.Params, error)) (rootfs.Params, error) {
	if o.cache == nil {
		return build(ctx, imagePath)
	}
	began := time.Now()
	k, err := key()
	if err != nil {
		return rootfs.Params{}, fmt.Errorf("disk cache key: %w", err)
	}
	keyed := time.Now()
	p, hit, err := o.cache.use(ctx, k, imagePath, build, o.note)
	if err != nil {
		return rootfs.Params{}, err
	}
	if o.note != nil {
		// How long the key and the disk took: for a directory the key reads the whole
		// tree; a hit reads the whole disk to verify it, a miss builds it.
		what, then := "built into the disk cache", "built and stored"
		if hit {
			what, then = "taken from the disk cache", "linked and verified"
		}
		o.note(fmt.Sprintf("disk %s %s (key %s, computed in %s; %s in %s)", what, o.cache.Dir(), k[:16],
			keyed.Sub(began).Round(time.Millisecond), then, time.Since(keyed).Round(time.Millisecond)))
	}
	return p, nil
}

// Check reports a local source that does not exist before any slow work starts.
func (s Source) Check() error {
	switch s.Kind {
	case Dir, OCILayout, DockerArchive:
		st, err := os.Stat(s.Ref)
		if err != nil {
			return fmt.Errorf("container rootfs %s: %w: %w", s.Ref, ErrSource, err)
		}
		if s.Kind != DockerArchive && !st.IsDir() {
			return fmt.Errorf("container rootfs %s: not a directory: %w", s.Ref, ErrSource)
		}
	case Registry:
	default:
		return fmt.Errorf("source kind %q: want dir, oci, docker-archive or registry: %w", s.Kind, ErrSource)
	}
	return nil
}

// OCISource is the source for the CLI's --oci PATH: an OCI image layout if PATH is a
// directory, else a docker save archive (which may itself hold an OCI layout).
func OCISource(path string) Source {
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		return Source{DockerArchive, path}
	}
	return Source{OCILayout, path}
}

// abbreviate lists the first n of paths, and how many more there are.
func abbreviate(paths []string, n int) string {
	if len(paths) <= n {
		return strings.Join(paths, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(paths[:n], ", "), len(paths)-n)
}
