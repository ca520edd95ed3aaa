package rootfs

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"confguest/rootfs/verity"
)

// Option configures Build and AppendVerity.
type Option func(*options)

type options struct {
	preserveOwners bool
	normalizePerms bool
	specialFiles   bool
	skipDev        func(paths []string)
	timestamp      int64
	maxSize        int64
	salt           []byte
	hasSalt        bool
	fsUUID         string
}

func newOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func (o options) verityOptions() []verity.Option {
	if o.hasSalt {
		return []verity.Option{verity.WithSalt(o.salt)}
	}
	return nil
}

// WithPreservedOwnership stores each file's uid and gid as found in the
// source. By default every file is owned by root (mkfs.erofs --all-root),
// so the image does not depend on who ran the build.
func WithPreservedOwnership() Option { return func(o *options) { o.preserveOwners = true } }

// WithNormalizedPermissions builds from a staged copy of the tree in which
// directories are 0755, regular files 0755 if any execute bit is set and
// 0644 otherwise (setuid, setgid and sticky bits kept), so that the umask
// of whoever created the tree does not change the image. Without it, modes
// are stored as found.
func WithNormalizedPermissions() Option { return func(o *options) { o.normalizePerms = true } }

// WithSpecialFiles stores device nodes, fifos and sockets instead of
// refusing them (container layers carry overlayfs whiteouts, which are
// character devices 0:0).
func WithSpecialFiles() Option { return func(o *options) { o.specialFiles = true } }

// WithoutDevSpecialFiles leaves the device nodes, fifos and sockets under the tree's dev/
// out of the image instead of refusing them, and calls skipped with their paths (relative
// to the tree) before the image is built. A root filesystem made by debootstrap has
// dev/console, dev/null and more, and a container gets its own /dev. Special files
// elsewhere in the tree are refused as without it; WithSpecialFiles stores them all.
func WithoutDevSpecialFiles(skipped func(paths []string)) Option {
	return func(o *options) { o.skipDev = skipped }
}

// WithTimestamp sets the time stored for every inode and the filesystem
// (mkfs.erofs -T). The default is the Unix epoch.
func WithTimestamp(t time.Time) Option { return func(o *options) { o.timestamp = t.Unix() } }

// WithMaxSize refuses trees whose file data, or images whose erofs data
// plus hash tree, exceed n bytes. 0 (the default) means no limit.
func WithMaxSize(n int64) Option { return func(o *options) { o.maxSize = n } }

// WithSalt sets the dm-verity salt. The default is derived from the erofs
// image (see package verity).
func WithSalt(salt []byte) Option {
	return func(o *options) { o.salt, o.hasSalt = append([]byte(nil), salt...), true }
}

// WithFSUUID sets the erofs filesystem UUID. The default is derived from
// the tree's listing (see the package doc).
func WithFSUUID(uuid string) Option { return func(o *options) { o.fsUUID = uuid } }

// Build turns the directory srcDir into an erofs image at imagePath with a
// dm-verity tree appended, and returns the verity parameters. The image is
// written to a temporary file beside imagePath and renamed into place only
// when complete. See the package doc for what is refused and why.
func Build(ctx context.Context, srcDir, imagePath string, opts ...Option) (Params, error) {
	o := newOptions(opts)
	src, err := checkSource(srcDir, imagePath)
	if err != nil {
		return Params{}, err
	}
	tr, err := walkTree(src, o)
	if err != nil {
		return Params{}, err
	}
	if len(tr.skipped) > 0 {
		o.skipDev(tr.skipped)
	}
	if o.maxSize > 0 && tr.dataBytes > o.maxSize {
		return Params{}, fmt.Errorf("%s: %w: its files hold %d bytes, the limit is %d: remove files or raise the limit",
			srcDir, ErrTooLarge, tr.dataBytes, o.maxSize)
	}
	mkfs, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		return Params{}, fmt.Errorf("%w in PATH: install the Debian package erofs-utils (apt-get install erofs-utils)", ErrMkfsMissing)
	}
	uuid := o.fsUUID
	if uuid == "" {
		uuid = tr.uuid()
	}

	dir := filepath.Dir(imagePath)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(imagePath)+".*")
	if err != nil {
		return Params{}, fmt.Errorf("create image beside %s: %w", imagePath, err)
	}
	tmp.Close()
	done := false
	defer func() {
		if !done {
			os.Remove(tmp.Name())
		}
	}()

	from := src
	if o.normalizePerms {
		stage, err := os.MkdirTemp(dir, ".mkrootfs-stage-*")
		if err != nil {
			return Params{}, fmt.Errorf("create staging directory beside %s: %w", imagePath, err)
		}
		defer os.RemoveAll(stage)
		from = filepath.Join(stage, "root")
		if err := stageTree(ctx, src, from, tr, o); err != nil {
			return Params{}, err
		}
	}
	if err := runMkfs(ctx, mkfs, from, tmp.Name(), uuid, tr.skipped, o); err != nil {
		return Params{}, err
	}
	fi, err := os.Stat(tmp.Name())
	if err != nil {
		return Params{}, fmt.Errorf("stat new image: %w", err)
	}
	if o.maxSize > 0 {
		dataSize := (fi.Size() + verity.BlockSize - 1) / verity.BlockSize * verity.BlockSize
		tree := Params{DataBlocks: uint64(dataSize / verity.BlockSize), HashBlockSize: verity.BlockSize}.TreeSize()
		if total := dataSize + int64(tree); total > o.maxSize {
			return Params{}, fmt.Errorf("%s: %w: the image of %s would be %d bytes (erofs %d + hash tree %d), the limit is %d: remove files or raise the limit",
				imagePath, ErrTooLarge, srcDir, total, dataSize, tree, o.maxSize)
		}
	}
	p, err := verity.Format(ctx, tmp.Name(), o.verityOptions()...)
	if err != nil {
		return Params{}, fmt.Errorf("append hash tree to %s: %w", imagePath, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return Params{}, fmt.Errorf("chmod new image: %w", err)
	}
	if err := os.Rename(tmp.Name(), imagePath); err != nil {
		return Params{}, fmt.Errorf("move image into place: %w", err)
	}
	done = true
	return p, nil
}

// checkSource resolves srcDir (a symlink to a directory is followed) and
// makes sure the image is not written inside it.
func checkSource(srcDir, imagePath string) (string, error) {
	fi, err := os.Stat(srcDir)
	if err != nil {
		return "", fmt.Errorf("%s: %w: %w: give an existing, readable directory", srcDir, ErrUnreadable, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s: %w: give the directory to turn into an image", srcDir, ErrNotDir)
	}
	src, err := filepath.EvalSymlinks(srcDir)
	if err != nil {
		return "", fmt.Errorf("%s: %w: %w", srcDir, ErrUnreadable, err)
	}
	if src, err = filepath.Abs(src); err != nil {
		return "", fmt.Errorf("resolve %s: %w", srcDir, err)
	}
	dir, err := filepath.Abs(filepath.Dir(imagePath))
	if err == nil {
		if d, err := filepath.EvalSymlinks(dir); err == nil {
			dir = d
		}
	}
	if rel, err := filepath.Rel(src, dir); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s: %w %s: write the image outside the tree", imagePath, ErrImageInSource, srcDir)
	}
	return src, nil
}

// runMkfs builds the erofs image of src without the paths in exclude (relative to src).
func runMkfs(ctx context.Context, mkfs, src, image, uuid string, exclude []string, o options) error {
	args := []string{
		"-T" + strconv.FormatInt(o.timestamp, 10), // every inode and the superblock
		"-U" + uuid,
		"-x-1", // no extended attributes: host labels (security.selinux, ...) must not leak in
		"--quiet",
	}
	for _, p := range exclude {
		args = append(args, "--exclude-path="+p) // mkfs.erofs takes it relative to src
	}
	if !o.preserveOwners {
		args = append(args, "--all-root")
	}
	args = append(args, image, src)
	cmd := exec.CommandContext(ctx, mkfs, args...)
	cmd.Env = []string{"LC_ALL=C"} // nothing from the caller's environment (SOURCE_DATE_EPOCH, ...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s %s: %w: %s", ErrMkfs, mkfs, strings.Join(args, " "), err, tail(out.String()))
	}
	return nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// fsUUIDDomain separates the erofs UUID derivation from other digests.
const fsUUIDDomain = "confguest erofs uuid v1\n"

func uuidFromDigest(sum []byte) string {
	u := append([]byte(nil), sum[:16]...)
	u[6] = u[6]&0x0f | 0x80 // RFC 9562 version 8
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
