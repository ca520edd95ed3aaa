package boot

import "errors"

var (
	// ErrVerity means dm-verity found a block that does not match the root
	// hash on the command line: the root disk is not the measured image.
	ErrVerity = errors.New("dm-verity detected corrupted data on the root device")
	// ErrNoRootDevice means the confguest.root device never appeared.
	ErrNoRootDevice = errors.New("root device not found")
	// ErrNotMountPoint means the root filesystem lacks a directory PID 1
	// mounts on.
	ErrNotMountPoint = errors.New("mount point missing on the root filesystem")
)
