package launcher

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"confguest/hostside/image"
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
	s := &Sandbox{dir: t.TempDir()}
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
