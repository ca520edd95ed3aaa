package image

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"confguest/rootfs"
)

// cachedBuild runs BuildDisk with cache c and says whether the disk came from the cache,
// and whether a bad entry was removed on the way.
func cachedBuild(t *testing.T, c *Cache, src Source, dst string) (d Disk, hit, rebuilt bool) {
	t.Helper()
	var mu sync.Mutex
	var notes []string
	d, err := BuildDisk(context.Background(), src, t.TempDir(), dst, WithCache(c), WithNote(func(l string) {
		mu.Lock()
		notes = append(notes, l)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatalf("BuildDisk(%v, cached) = %v", src, err)
	}
	all := strings.Join(notes, "\n")
	if !strings.Contains(all, "disk cache") {
		t.Fatalf("BuildDisk(%v, cached) notes %q, want one saying what the cache did", src, all)
	}
	return d, strings.Contains(all, "taken from the disk cache"), strings.Contains(all, "removed and rebuilt")
}

func treeSource(t *testing.T, content string) Source {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	// Enough data for a hash tree of more than the root block's worth.
	if err := os.WriteFile(filepath.Join(dir, "big"), []byte(strings.Repeat(content, 40000)), 0o644); err != nil {
		t.Fatal(err)
	}
	return Source{Kind: Dir, Ref: dir}
}

func inodeOf(t *testing.T, path string) (ino, nlink uint64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Ino, uint64(st.Nlink)
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// entryOf returns the one entry's disk path in the cache.
func entryOf(t *testing.T, c *Cache) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(c.Dir(), "*.img"))
	if len(m) != 1 {
		t.Fatalf("cache entries %q, want one", m)
	}
	return m[0]
}

// TestDiskCache: a second build of the same content is taken from the cache, as a hard
// link to the entry; a changed tree is a miss; an entry damaged in its data, its hash tree,
// its length or its recorded key is removed and rebuilt, never handed out.
func TestDiskCache(t *testing.T) {
	for _, tc := range []struct {
		name        string
		second      string // content of the second source
		damage      func(t *testing.T, entry string, p rootfs.Params)
		wantHit     bool
		wantRebuilt bool
	}{
		{name: "hit", second: "a", wantHit: true},
		{name: "miss", second: "b"},
		{name: "changed data byte", second: "a", wantRebuilt: true, damage: func(t *testing.T, e string, p rootfs.Params) {
			writeAt(t, e, int64(p.DataBlocks*uint64(p.DataBlockSize))-100, []byte{0x55})
		}},
		{name: "changed hash tree byte", second: "a", wantRebuilt: true, damage: func(t *testing.T, e string, p rootfs.Params) {
			writeAt(t, e, int64(p.HashOffset)+int64(p.HashBlockSize)+7, []byte{0xaa})
		}},
		{name: "truncated", second: "a", wantRebuilt: true, damage: func(t *testing.T, e string, p rootfs.Params) {
			if err := os.Truncate(e, int64(p.HashOffset)+100); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "recorded key differs", second: "a", wantRebuilt: true, damage: func(t *testing.T, e string, p rootfs.Params) {
			b, _ := json.Marshal(cacheEntry{Key: strings.Repeat("0", 64), Verity: p})
			if err := os.WriteFile(strings.TrimSuffix(e, ".img")+".json", b, 0o444); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := OpenCache(t.TempDir(), 0)
			if err != nil {
				t.Fatal(err)
			}
			run := t.TempDir()
			first, hit, _ := cachedBuild(t, c, treeSource(t, "a"), filepath.Join(run, "ctr0.img"))
			if hit {
				t.Fatalf("first build of a tree: taken from an empty cache")
			}
			if tc.damage != nil {
				tc.damage(t, entryOf(t, c), first.Verity)
			}
			dst := filepath.Join(run, "ctr1.img")
			d, hit, rebuilt := cachedBuild(t, c, treeSource(t, tc.second), dst)
			if hit != tc.wantHit || rebuilt != tc.wantRebuilt {
				t.Errorf("second build: hit %t, rebuilt %t, want %t, %t", hit, rebuilt, tc.wantHit, tc.wantRebuilt)
			}
			if err := rootfs.Verify(dst, d.Verity); err != nil {
				t.Errorf("rootfs.Verify(second disk) = %v, want nil: a bad disk was handed out", err)
			}
			if sameContent := tc.second == "a"; (d.Verity == first.Verity) != sameContent {
				t.Errorf("second disk's parameters equal the first's: %t, want %t", d.Verity == first.Verity, sameContent)
			}
			if tc.second == "a" {
				entry := entryOf(t, c)
				ino, nlink := inodeOf(t, dst)
				eino, _ := inodeOf(t, entry)
				if ino != eino || nlink < 2 {
					t.Errorf("second disk: inode %d with %d links, want the entry's inode %d, linked", ino, nlink, eino)
				}
				if err := rootfs.Verify(entry, d.Verity); err != nil {
					t.Errorf("rootfs.Verify(cache entry) = %v, want nil", err)
				}
			}
		})
	}
}

// TestDiskCacheEviction: over its bound the cache drops the least recently used entry that
// no run directory links, else the least recently used one; a disk handed out before (a
// hard link in a run directory) stays whole.
func TestDiskCacheEviction(t *testing.T) {
	for _, tc := range []struct {
		name     string
		releaseA bool // a's run directories are gone before c is built
		want     map[string]bool
	}{
		{"all in use: least recently used goes", false, map[string]bool{"a": true, "b": false, "c": true}},
		{"unused goes before used", true, map[string]bool{"a": false, "b": true, "c": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := OpenCache(t.TempDir(), 1<<40)
			if err != nil {
				t.Fatal(err)
			}
			run := t.TempDir()
			a, _, _ := cachedBuild(t, c, treeSource(t, "a"), filepath.Join(run, "a.img"))
			b, _, _ := cachedBuild(t, c, treeSource(t, "b"), filepath.Join(run, "b.img"))
			if _, hit, _ := cachedBuild(t, c, treeSource(t, "a"), filepath.Join(run, "a2.img")); !hit {
				t.Fatalf("a again: not taken from the cache")
			}
			fi, _ := os.Stat(a.Path)
			c.max = 2*fi.Size() + fi.Size()/2 // room for two entries of this size
			if tc.releaseA {
				os.Remove(filepath.Join(run, "a.img"))
				os.Remove(filepath.Join(run, "a2.img"))
			}
			cachedBuild(t, c, treeSource(t, "c"), filepath.Join(run, "c.img"))

			for _, content := range []string{"a", "b", "c"} {
				key, err := dirKey(treeSource(t, content).Ref)
				if err != nil {
					t.Fatal(err)
				}
				_, err = os.Stat(c.imgPath(key))
				if got := err == nil; got != tc.want[content] {
					t.Errorf("entry of %q in the cache: %t, want %t", content, got, tc.want[content])
				}
			}
			if err := rootfs.Verify(b.Path, b.Verity); err != nil {
				t.Errorf("rootfs.Verify(b's disk) = %v, want nil: a disk in use must outlive its entry", err)
			}
		})
	}
}

// TestDiskCacheConcurrentBuilders: builders of one key at once build it once; the others
// wait for the entry and take it.
func TestDiskCacheConcurrentBuilders(t *testing.T) {
	c, err := OpenCache(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	run := t.TempDir()
	const n = 4
	srcs := make([]Source, n)
	for i := range srcs {
		srcs[i] = treeSource(t, "same")
	}
	var wg sync.WaitGroup
	hits := make([]bool, n)
	disks := make([]Disk, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			disks[i], hits[i], _ = cachedBuild(t, c, srcs[i], filepath.Join(run, fmt.Sprintf("ctr%d.img", i)))
		}()
	}
	wg.Wait()
	built := 0
	for i := range n {
		if !hits[i] {
			built++
		}
		if err := rootfs.Verify(disks[i].Path, disks[i].Verity); err != nil {
			t.Errorf("rootfs.Verify(disk %d) = %v", i, err)
		}
	}
	if built != 1 {
		t.Errorf("%d concurrent builders of one tree built it %d times, want once", n, built)
	}
	ents, _ := os.ReadDir(c.Dir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".build-") || strings.HasPrefix(e.Name(), ".meta-") {
			t.Errorf("cache holds a temporary file %s after the builds", e.Name())
		}
	}
}

// TestDiskCacheImageKey: an image's disk is found by its layer digests, so a hit reads no
// layer: after a blob is corrupted, the cached disk is still handed out, and without the
// cache the corruption is refused.
func TestDiskCacheImageKey(t *testing.T) {
	img := testImage(t)
	lay := writeLayout(t, img)
	c, err := OpenCache(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	run := t.TempDir()
	first, _, _ := cachedBuild(t, c, Source{OCILayout, lay}, filepath.Join(run, "a.img"))
	blob := layerBlob(t, lay, img)
	writeAt(t, blob, 10, []byte("XXXX"))
	d, hit, _ := cachedBuild(t, c, Source{OCILayout, lay}, filepath.Join(run, "b.img"))
	if !hit || d.Verity != first.Verity || len(d.Config.Cmd) == 0 {
		t.Errorf("second build of the image: hit %t, root hash %s (first %s), cmd %q: want the cached disk and the image's config",
			hit, d.Verity.RootHash, first.Verity.RootHash, d.Config.Cmd)
	}
	if _, err := BuildDisk(context.Background(), Source{OCILayout, lay}, t.TempDir(), filepath.Join(run, "c.img")); err == nil {
		t.Errorf("BuildDisk(corrupted layer, no cache) = nil, want an error")
	}
}

// TestPlace: a cached disk is hard-linked into a run directory on its filesystem and copied
// into one on another (here /dev/shm, a tmpfs), with the same bytes either way.
func TestPlace(t *testing.T) {
	src := filepath.Join(t.TempDir(), "entry.img")
	if err := os.WriteFile(src, []byte("disk bytes"), 0o444); err != nil {
		t.Fatal(err)
	}
	shm, err := os.MkdirTemp("/dev/shm", "place")
	if err != nil {
		t.Skipf("no /dev/shm for a second filesystem: %v", err)
	}
	defer os.RemoveAll(shm)
	srcIno, _ := inodeOf(t, src)
	for _, tc := range []struct {
		name     string
		dst      string
		wantLink bool
	}{
		{"same filesystem", filepath.Join(t.TempDir(), "ctr0.img"), true},
		{"another filesystem", filepath.Join(shm, "ctr0.img"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := place(src, tc.dst); err != nil {
				t.Fatalf("place(%s, %s) = %v", src, tc.dst, err)
			}
			b, err := os.ReadFile(tc.dst)
			if err != nil || string(b) != "disk bytes" {
				t.Errorf("placed disk = %q, %v, want the entry's bytes", b, err)
			}
			ino, _ := inodeOf(t, tc.dst)
			if linked := ino == srcIno; linked != tc.wantLink {
				t.Errorf("place(%s, %s) linked: %t, want %t", src, tc.dst, linked, tc.wantLink)
			}
		})
	}
}

// TestDiskCacheFailedBuild: a build that fails leaves no entry, and the next use of the
// cache removes its lock file.
func TestDiskCacheFailedBuild(t *testing.T) {
	c, err := OpenCache(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := treeSource(t, "x")
	if err := syscall.Mkfifo(filepath.Join(bad.Ref, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := BuildDisk(context.Background(), bad, t.TempDir(), filepath.Join(t.TempDir(), "d.img"), WithCache(c)); err == nil {
		t.Fatalf("BuildDisk(tree with a fifo, cached) = nil, want the build's error")
	}
	cachedBuild(t, c, treeSource(t, "good"), filepath.Join(t.TempDir(), "d.img"))
	imgs, _ := filepath.Glob(filepath.Join(c.Dir(), "*.img"))
	locks, _ := filepath.Glob(filepath.Join(c.Dir(), "[0-9a-f]*.lock"))
	if len(imgs) != 1 || len(locks) != 1 {
		t.Errorf("cache after a failed and a good build: entries %q, lock files %q, want one of each", imgs, locks)
	}
}

// A directory whose dev/ holds a fifo (as a debootstrap root holds device nodes): the
// build leaves it out and says so, and so does a later hit, which builds nothing.
func TestDiskCacheHitSaysWhatWasLeftOut(t *testing.T) {
	src := treeSource(t, "with a dev fifo\n")
	if err := os.Mkdir(filepath.Join(src.Ref, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(src.Ref, "dev", "initctl"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCache(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"built into the disk cache", "taken from the disk cache"} {
		var notes []string
		_, err := BuildDisk(context.Background(), src, t.TempDir(), filepath.Join(t.TempDir(), "d.img"), WithCache(c),
			WithNote(func(l string) { notes = append(notes, l) }))
		all := strings.Join(notes, "\n")
		if err != nil || !strings.Contains(all, want) || strings.Count(all, "left out 1 device nodes, fifos and sockets") != 1 || !strings.Contains(all, "dev/initctl") {
			t.Errorf("BuildDisk (%s) = %v, notes %q; want one note naming dev/initctl", want, err, all)
		}
	}
}
