package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"
)

// SwitchRoot makes NewRoot the root as switch_root(8) does, without
// exec'ing: it moves the Move mounts into NewRoot, moves NewRoot onto /,
// chroots into it and deletes the initramfs contents to free their memory.
// The calling process stays PID 1.
type SwitchRoot struct {
	NewRoot string
	Move    []string
}

func (s SwitchRoot) String() string { return "switch root to " + s.NewRoot }

func (s SwitchRoot) Run(context.Context) error {
	for _, m := range s.Move {
		dst := filepath.Join(s.NewRoot, m)
		if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: %s: add the directory to the root filesystem", ErrNotMountPoint, m)
		}
		if err := mount.MoveMount(m, dst); err != nil {
			return fmt.Errorf("move %s to %s: %w", m, dst, err)
		}
	}
	if err := unix.Chdir(s.NewRoot); err != nil {
		return fmt.Errorf("chdir %s: %w", s.NewRoot, err)
	}
	old, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open old root: %w", err)
	}
	defer unix.Close(old)
	if err := mount.MoveMount(".", "/"); err != nil {
		return fmt.Errorf("move %s to /: %w", s.NewRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	// Freeing the initramfs is best effort: what stays only costs memory.
	_ = DeleteTree(old)
	return nil
}

// DeleteTree removes everything below the directory open as dirfd without
// crossing into other filesystems (mount points are left in place).
func DeleteTree(dirfd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(dirfd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	return deleteBelow(dirfd, st.Dev)
}

func deleteBelow(dirfd int, dev uint64) error {
	dup, err := unix.Dup(dirfd)
	if err != nil {
		return fmt.Errorf("dup: %w", err)
	}
	d := os.NewFile(uintptr(dup), "dir")
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("read directory: %w", err)
	}
	var errs []error
	for _, name := range names {
		child, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil { // not a directory (or a symlink): unlink it
			if err := unix.Unlinkat(dirfd, name, 0); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", name, err))
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(child, &st); err != nil || st.Dev != dev {
			unix.Close(child) // another filesystem: leave it
			continue
		}
		if err := deleteBelow(child, dev); err != nil {
			errs = append(errs, err)
		}
		unix.Close(child)
		if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
