package rootfs

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestWithoutDevSpecialFiles: the device nodes, fifos and sockets under dev/ (as debootstrap
// leaves them) are left out and reported, and the image is the one of the same tree
// without them; a special file elsewhere is still refused.
func TestWithoutDevSpecialFiles(t *testing.T) {
	ctx := context.Background()
	when := time.Unix(1700000000, 0)
	tree := []node{{path: "etc", kind: "dir", mode: 0o755}, {path: "etc/hostname", kind: "file", data: "debian\n", mode: 0o644}, {path: "dev", kind: "dir", mode: 0o755}}
	plain, withDev, elsewhere := t.TempDir(), t.TempDir(), t.TempDir()
	makeTree(t, plain, tree, when)
	makeTree(t, withDev, tree, when)
	makeTree(t, elsewhere, tree, when)
	want := []string{"dev/initctl", "dev/log"}
	if err := syscall.Mkfifo(filepath.Join(withDev, "dev", "initctl"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(withDev, "dev", "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if os.Geteuid() == 0 {
		if err := syscall.Mknod(filepath.Join(withDev, "dev", "console"), syscall.S_IFCHR|0o600, 5<<8|1); err != nil {
			t.Fatal(err)
		}
		want = []string{"dev/console", "dev/initctl", "dev/log"}
	}
	for _, dir := range []string{withDev, filepath.Join(withDev, "dev")} { // mknod changed their times
		os.Chtimes(dir, when, when)
	}
	if err := syscall.Mkfifo(filepath.Join(elsewhere, "etc", "initctl"), 0o600); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	ref, err := Build(ctx, plain, filepath.Join(out, "plain.img"))
	if err != nil {
		t.Fatalf("Build(tree) = %v", err)
	}
	var skipped []string
	got, err := Build(ctx, withDev, filepath.Join(out, "dev.img"), WithoutDevSpecialFiles(func(p []string) { skipped = p }))
	if err != nil {
		t.Fatalf("Build(tree with special files in dev/, WithoutDevSpecialFiles) = %v", err)
	}
	if !slices.Equal(skipped, want) {
		t.Errorf("skipped %q, want %q", skipped, want)
	}
	if got.RootHash != ref.RootHash {
		t.Errorf("image without the dev/ special files has root hash %s, the tree without them %s: want equal", got.RootHash, ref.RootHash)
	}
	if _, err := Build(ctx, withDev, filepath.Join(out, "refused.img")); !errors.Is(err, ErrSpecialFile) {
		t.Errorf("Build(tree with special files in dev/) = %v, want ErrSpecialFile", err)
	}
	if _, err := Build(ctx, elsewhere, filepath.Join(out, "etc.img"), WithoutDevSpecialFiles(func([]string) {})); !errors.Is(err, ErrSpecialFile) {
		t.Errorf("Build(tree with a fifo in etc/, WithoutDevSpecialFiles) = %v, want ErrSpecialFile", err)
	}
}
