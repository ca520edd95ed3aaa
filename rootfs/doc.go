// Package rootfs turns a directory tree into a read-only root filesystem
// image for the guest: an erofs image made by mkfs.erofs (Debian
// erofs-utils) with a dm-verity hash tree appended after it (package
// verity), described by Params. Verify checks an image block by block in
// userspace; AppendVerity adds a tree to an existing image (container layer
// disks).
//
// # Image layout
//
//	[0, hash_offset)                 erofs image, zero-padded to 4096 bytes
//	[hash_offset, +512)              dm-verity superblock (veritysetup's format)
//	[hash_offset+4096, end)          hash tree, top level first
//
// A consumer maps it with the device-mapper table line
//
//	0 <data_blocks*8> verity 1 <dev> <dev> 4096 4096 <data_blocks> <hash_offset/4096+1> sha256 <root_hash> <salt>
//
// # Determinism
//
// The same tree gives the same bytes wherever and whenever it is built:
// every inode and the superblock carry one fixed timestamp (WithTimestamp,
// default the Unix epoch; mkfs.erofs -T), all files are owned by root
// unless WithPreservedOwnership, extended attributes are not stored (-x-1),
// mkfs.erofs runs with an empty environment and lays directories out in
// name order regardless of creation order, the erofs UUID is derived from
// the tree's listing (names, types, modes, sizes, symlink targets; or
// WithFSUUID), and the verity salt is derived from the erofs image (or
// WithSalt). Permission bits are stored as found; WithNormalizedPermissions
// builds from a staged copy with 0755/0644 modes so the umask of whoever
// created the tree does not matter.
//
// # What Build refuses, and what it stores
//
// Each refusal names the path and the fix, and wraps a sentinel:
//   - a source that does not exist or cannot be read, or a file or
//     directory in it that the building user cannot read: ErrUnreadable
//     (every regular file is opened once before mkfs.erofs runs);
//   - a source that is not a directory: ErrNotDir;
//   - a source with no entries: ErrEmptyTree;
//   - with WithMaxSize(n), file data above n bytes (checked before
//     mkfs.erofs runs) or an erofs image plus hash tree above n bytes:
//     ErrTooLarge;
//   - device nodes, fifos and sockets: ErrSpecialFile, because the guest's
//     /dev is a devtmpfs and run-time fifos and sockets live on tmpfs;
//     WithSpecialFiles stores them (container layers need the character
//     device 0:0 that overlayfs uses as a whiteout);
//   - an image path inside the source tree: ErrImageInSource;
//   - no mkfs.erofs in PATH: ErrMkfsMissing, naming the Debian package
//     erofs-utils.
//
// Symlinks are stored verbatim, including absolute ones and ones whose
// ".." components climb above the tree: they are never followed at build
// time, and in the guest they resolve inside the guest's own root, where
// "/" is the image's root and ".." stops there. A symlink given as the
// source directory itself is followed.
package rootfs
