package rootfs

import (
	"errors"

	"confguest/rootfs/verity"
)

// Sentinel errors of Build. Each error wraps one of them and names the path
// and the fix.
var (
	// ErrMkfsMissing: mkfs.erofs is not installed (Debian package erofs-utils).
	ErrMkfsMissing = errors.New("mkfs.erofs not found")
	// ErrMkfs: mkfs.erofs ran and failed.
	ErrMkfs = errors.New("mkfs.erofs failed")
	// ErrNotDir: the source is not a directory.
	ErrNotDir = errors.New("source is not a directory")
	// ErrUnreadable: the source, or a file or directory in it, cannot be read.
	ErrUnreadable = errors.New("cannot read source")
	// ErrEmptyTree: the source directory has no entries.
	ErrEmptyTree = errors.New("source tree is empty")
	// ErrTooLarge: the tree or the finished image exceeds the WithMaxSize limit.
	ErrTooLarge = errors.New("image too large")
	// ErrSpecialFile: a device node, fifo or socket in the tree, without WithSpecialFiles.
	ErrSpecialFile = errors.New("special file in source tree")
	// ErrImageInSource: the image would be written inside the tree it is built from.
	ErrImageInSource = errors.New("image path inside source tree")
)

// Errors of Verify and AppendVerity, shared with package verity.
var (
	ErrBadParams  = verity.ErrBadParams
	ErrEmpty      = verity.ErrEmpty
	ErrTruncated  = verity.ErrTruncated
	ErrSuperblock = verity.ErrSuperblock
	ErrHashBlock  = verity.ErrHashBlock
	ErrDataBlock  = verity.ErrDataBlock
)
