package launcher

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"confguest/hostside/image"
	"confguest/rootfs"
)

// TestBuildDiskSharesIdenticalImages: a rootfs identical to one built before gets that
// disk back (same path and serial, no second file); a different one gets the next serial.
func TestBuildDiskSharesIdenticalImages(t *testing.T) {
	ctx := context.Background()
	src := func(content string) image.Source {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "hello"), []byte(content), 0o644)
		return image.Source{Kind: image.Dir, Ref: dir}
	}
	s := &Sandbox{dir: t.TempDir(), opts: Options{CacheDir: t.TempDir()}}
	d0, err := s.BuildDisk(ctx, src("a"))
	if err != nil {
		t.Fatal(err)
	}
	d1, err := s.BuildDisk(ctx, src("a")) // another directory, the same files
	if err != nil {
		t.Fatal(err)
	}
	serial0, serial1 := d0.Serial, d1.Serial
	if serial0 != "ctr0" || serial1 != "ctr0" || d1.Path != d0.Path || d1.Verity != d0.Verity {
		t.Errorf("identical rootfs: got %s %s and %s %s, want ctr0 %s twice", serial0, d0.Path, serial1, d1.Path, d0.Path)
	}
	d2, err := s.BuildDisk(ctx, src("b"))
	if err != nil {
		t.Fatal(err)
	}
	if serial2 := d2.Serial; serial2 != "ctr1" || d2.Path == d0.Path || d2.Verity.RootHash == d0.Verity.RootHash {
		t.Errorf("different rootfs: got %s %s (root hash %s), want ctr1, its own file and root hash", d2.Serial, d2.Path, d2.Verity.RootHash)
	}
	ents, _ := os.ReadDir(s.dir)
	var imgs []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".img") {
			imgs = append(imgs, e.Name())
		}
	}
	if strings.Join(imgs, " ") != "ctr0.img ctr1.img" {
		t.Errorf("disk files in the run directory: %q, want ctr0.img ctr1.img", imgs)
	}

	// attachDisk: an attached disk needs nothing; the others need a running VM.
	s.attached = map[string]time.Time{"ctr0": {}}
	if err := s.attachDisk(ctx, "ctr0"); err != nil {
		t.Errorf("attachDisk(ctr0), attached at boot = %v, want nil", err)
	}
	if err := s.attachDisk(ctx, "ctr1"); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("attachDisk(ctr1) without a VM = %v, want an error saying the VM is not running", err)
	}
	if err := s.attachDisk(ctx, "ctr7"); err == nil || !strings.Contains(err.Error(), "no such disk") {
		t.Errorf("attachDisk(ctr7) = %v, want an error naming the unknown disk", err)
	}
}

// TestBuildDiskUsesTheCache: a second sandbox with the same rootfs gets the first one's
// disk from the disk cache as a hard link (one inode, three names: the cache's and each run
// directory's), and closing the first sandbox's run directory leaves the second's disk whole.
// DiskCacheBytes < 0 builds a disk of its own.
func TestBuildDiskUsesTheCache(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "hello"), []byte("same"), 0o644)
	src := image.Source{Kind: image.Dir, Ref: root}
	cache := t.TempDir()
	var inodes []uint64
	var links []uint64
	var disks []Disk
	for _, o := range []Options{{CacheDir: cache}, {CacheDir: cache}, {CacheDir: cache, DiskCacheBytes: -1}} {
		s := &Sandbox{dir: t.TempDir(), opts: o}
		d, err := s.BuildDisk(ctx, src)
		if err != nil {
			t.Fatalf("BuildDisk(%v) = %v", src, err)
		}
		fi, err := os.Stat(d.Path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		inodes, links, disks = append(inodes, st.Ino), append(links, uint64(st.Nlink)), append(disks, d)
	}
	if inodes[0] != inodes[1] || links[1] != 3 {
		t.Errorf("second sandbox's disk: inode %d with %d links, want the first's inode %d with 3 links", inodes[1], links[1], inodes[0])
	}
	if inodes[2] == inodes[0] || links[2] != 1 {
		t.Errorf("sandbox without a cache: inode %d with %d links, want a disk of its own", inodes[2], links[2])
	}
	if err := os.RemoveAll(filepath.Dir(disks[0].Path)); err != nil {
		t.Fatal(err)
	}
	if err := rootfs.Verify(disks[1].Path, disks[1].Verity); err != nil {
		t.Errorf("rootfs.Verify(second disk) after the first run directory is gone = %v", err)
	}
}
