package boot

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDeleteTree(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	keep := filepath.Join(outside, "keep")
	for _, p := range []string{keep, filepath.Join(root, "init"), filepath.Join(root, "a/b/c/file")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Symlinks are removed, never followed.
	if err := os.Symlink(outside, filepath.Join(root, "a/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := DeleteTree(fd); err != nil {
		t.Fatalf("DeleteTree(%s) = %v", root, err)
	}
	left, _ := os.ReadDir(root)
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if len(names) != 0 {
		t.Errorf("DeleteTree left %v in %s, want nothing", names, root)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("DeleteTree followed a symlink and removed %s: %v", keep, err)
	}
}

func TestDeleteTreeStaysOnItsFilesystem(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	root := t.TempDir()
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	inner := filepath.Join(mnt, "on-other-fs")
	if err := os.WriteFile(inner, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "initramfs-file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	_ = DeleteTree(fd) // the busy mount point cannot be removed; that is expected
	if _, err := os.Stat(inner); err != nil {
		t.Errorf("DeleteTree crossed into a mounted filesystem: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "initramfs-file")); !os.IsNotExist(err) {
		t.Errorf("DeleteTree left initramfs-file: %v", err)
	}
}
