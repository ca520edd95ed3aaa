package rootfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool returns the path of a tool a test needs. Under CI=true a missing
// tool fails the test; elsewhere the test is skipped.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: install the Debian package %s", name, pkg)
		}
		t.Skipf("%s not found (Debian package %s)", name, pkg)
	}
	return p
}

// node describes one entry of a test tree.
type node struct {
	path   string
	kind   string // "file", "dir", "symlink", "hardlink" (data = existing path)
	data   string
	mode   fs.FileMode
	explic bool // chmod to mode explicitly, ignoring the umask
}

var sample = []node{
	{path: "bin", kind: "dir", mode: 0o755},
	{path: "bin/agent", kind: "file", data: "#!/bin/sh\necho agent\n", mode: 0o755},
	{path: "bin/sh", kind: "hardlink", data: "bin/agent"},
	{path: "etc", kind: "dir", mode: 0o755},
	{path: "etc/hostname", kind: "file", data: "guest\n", mode: 0o644},
	{path: "etc/big", kind: "file", data: strings.Repeat("0123456789abcdef", 1000), mode: 0o644},
	{path: "etc/zz", kind: "dir", mode: 0o700},
	{path: "etc/zz/secret", kind: "file", data: "s", mode: 0o600},
	{path: "sbin", kind: "symlink", data: "bin"},
	{path: "escape-rel", kind: "symlink", data: "../../../../etc/shadow"},
	{path: "escape-abs", kind: "symlink", data: "/etc/passwd"},
	{path: "empty", kind: "file", mode: 0o644},
}

// makeTree creates nodes under root, in the order given, and stamps every
// entry with mtime.
func makeTree(t *testing.T, root string, nodes []node, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		p := filepath.Join(root, n.path)
		var err error
		switch n.kind {
		case "dir":
			err = os.MkdirAll(p, n.mode)
		case "file":
			err = os.WriteFile(p, []byte(n.data), n.mode)
		case "symlink":
			err = os.Symlink(n.data, p)
		case "hardlink":
			err = os.Link(filepath.Join(root, n.data), p)
		}
		if err == nil && n.explic {
			err = os.Chmod(p, n.mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		os.Chtimes(filepath.Join(root, n.path), mtime, mtime) // follows symlinks; fine
	}
}

func explicit(nodes []node) []node {
	out := slices.Clone(nodes)
	for i := range out {
		out[i].explic = out[i].kind == "dir" || out[i].kind == "file"
	}
	return out
}

func build(t *testing.T, src, img string, opts ...Option) Params {
	t.Helper()
	p, err := Build(context.Background(), src, img, opts...)
	if err != nil {
		t.Fatalf("Build(%s) = %v", src, err)
	}
	return p
}

func TestBuildReproducible(t *testing.T) {
	needTool(t, "mkfs.erofs", "erofs-utils")
	reversed := slices.Clone(sample)
	slices.Reverse(reversed)
	// Parents must exist before children: sort dirs first, then the rest
	// in reverse order of the sample.
	slices.SortStableFunc(reversed, func(a, b node) int {
		da, db := a.kind == "dir", b.kind == "dir"
		if da == db {
			return 0
		}
		if da {
			return -1
		}
		return 1
	})
	// The hard link needs its target.
	i := slices.IndexFunc(reversed, func(n node) bool { return n.kind == "hardlink" })
	reversed = append(append(slices.Clone(reversed[:i]), reversed[i+1:]...), reversed[i])

	tests := []struct {
		name      string
		a, b      []node
		umaskB    int
		opts      []Option
		wantEqual bool
	}{
		{"same modes, other path, order and mtimes", explicit(sample), explicit(reversed), 0o022, nil, true},
		{"normalized permissions, umask 077 vs 022", sample, reversed, 0o077, []Option{WithNormalizedPermissions()}, true},
		{"modes as found, umask 077 vs 022", sample, reversed, 0o077, nil, false},
		{"different content", explicit(sample), explicit(append(slices.Clone(sample), node{path: "x", kind: "file", data: "x", mode: 0o644, explic: true})), 0o022, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			old := syscall.Umask(0o022)
			defer syscall.Umask(old)
			srcA, srcB := filepath.Join(dir, "a"), filepath.Join(dir, "deeper/path/b")
			makeTree(t, srcA, tc.a, time.Now())
			imgA := filepath.Join(dir, "a.img")
			pa := build(t, srcA, imgA, tc.opts...)

			syscall.Umask(tc.umaskB)
			makeTree(t, srcB, tc.b, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC))
			imgB := filepath.Join(dir, "deeper/b.img")
			time.Sleep(1100 * time.Millisecond) // a different second for mkfs.erofs's clock
			pb := build(t, srcB, imgB, tc.opts...)
			syscall.Umask(0o022)

			a, _ := os.ReadFile(imgA)
			b, _ := os.ReadFile(imgB)
			if got := bytes.Equal(a, b) && pa == pb; got != tc.wantEqual {
				t.Errorf("images of %s and %s equal = %v (params %+v, %+v), want %v", srcA, srcB, got, pa, pb, tc.wantEqual)
			}
		})
	}
}

// extract unpacks an image with fsck.erofs, which also checks it.
func extract(t *testing.T, img string) string {
	t.Helper()
	fsck := needTool(t, "fsck.erofs", "erofs-utils")
	dst := filepath.Join(t.TempDir(), "x")
	if out, err := exec.Command(fsck, "--extract="+dst, img).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs --extract %s: %v\n%s", img, err, out)
	}
	return dst
}

func TestBuildContents(t *testing.T) {
	needTool(t, "mkfs.erofs", "erofs-utils")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, explicit(sample), time.Now())
	img := filepath.Join(dir, "root.img")
	stamp := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	p := build(t, src, img, WithTimestamp(stamp), WithSalt([]byte{0xca, 0xfe}))
	if p.Salt != "cafe" || p.HashOffset%4096 != 0 || p.DataBlocks != p.HashOffset/4096 {
		t.Errorf("Build params = %+v, want salt cafe and hash_offset = data_blocks*4096", p)
	}
	if err := Verify(img, p); err != nil {
		t.Errorf("Verify(fresh image) = %v", err)
	}
	if fi, err := os.Stat(img); err != nil || uint64(fi.Size()) != p.HashOffset+p.TreeSize() {
		t.Errorf("image size = %v (%v), want %d", fi.Size(), err, p.HashOffset+p.TreeSize())
	}
	x := extract(t, img)
	for _, n := range sample {
		got := filepath.Join(x, n.path)
		fi, err := os.Lstat(got)
		if err != nil {
			t.Errorf("extracted %s: %v", n.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s owned by %d:%d, want 0:0", n.path, st.Uid, st.Gid)
		}
		if n.kind != "symlink" && !fi.ModTime().Equal(stamp) {
			t.Errorf("%s mtime = %v, want %v", n.path, fi.ModTime().UTC(), stamp)
		}
		switch n.kind {
		case "symlink":
			if target, _ := os.Readlink(got); target != n.data {
				t.Errorf("symlink %s -> %q, want %q stored verbatim", n.path, target, n.data)
			}
		case "file", "dir":
			if fi.Mode().Perm() != n.mode {
				t.Errorf("%s mode = %v, want %v", n.path, fi.Mode().Perm(), n.mode)
			}
		}
		if n.kind == "file" {
			if data, _ := os.ReadFile(got); string(data) != n.data {
				t.Errorf("%s holds %d bytes, want %d", n.path, len(data), len(n.data))
			}
		}
	}
}

func TestBuildVeritysetupAccepts(t *testing.T) {
	vs := needTool(t, "veritysetup", "cryptsetup-bin")
	needTool(t, "mkfs.erofs", "erofs-utils")
	dir := t.TempDir()
	makeTree(t, filepath.Join(dir, "src"), sample, time.Now())
	img := filepath.Join(dir, "root.img")
	p := build(t, filepath.Join(dir, "src"), img)
	out, err := exec.Command(vs, "verify", fmt.Sprintf("--hash-offset=%d", p.HashOffset), img, img, p.RootHash).CombinedOutput()
	if err != nil {
		t.Errorf("veritysetup verify %s %s: %v\n%s", img, p.RootHash, err, out)
	}
	// A flipped byte in the erofs data is caught by both.
	b, _ := os.ReadFile(img)
	b[1024+3] ^= 1 // inside the erofs superblock, data block 0
	os.WriteFile(img, b, 0o644)
	if err := Verify(img, p); !errors.Is(err, ErrDataBlock) || !strings.Contains(err.Error(), "data block 0 ") {
		t.Errorf("Verify(flipped byte in block 0) = %v, want ErrDataBlock naming data block 0", err)
	}
	if _, err := exec.Command(vs, "verify", fmt.Sprintf("--hash-offset=%d", p.HashOffset), img, img, p.RootHash).CombinedOutput(); err == nil {
		t.Errorf("veritysetup verify accepts the image with a flipped byte")
	}
	// And one in the hash tree (a single level here: the block under the root).
	b[1024+3] ^= 1
	b[p.HashOffset+4096+40] ^= 1
	os.WriteFile(img, b, 0o644)
	if err := Verify(img, p); !errors.Is(err, ErrHashBlock) || !strings.Contains(err.Error(), "level 0 index 0") {
		t.Errorf("Verify(flipped byte in the hash tree) = %v, want ErrHashBlock naming level 0 index 0", err)
	}
}

func TestBuildOwnership(t *testing.T) {
	needTool(t, "mkfs.erofs", "erofs-utils")
	if os.Geteuid() != 0 {
		t.Skip("changing file owners needs root")
	}
	dir := t.TempDir()
	rootOwned, userOwned := filepath.Join(dir, "r"), filepath.Join(dir, "u")
	makeTree(t, rootOwned, explicit(sample), time.Now())
	makeTree(t, userOwned, explicit(sample), time.Now())
	filepath.WalkDir(userOwned, func(p string, d fs.DirEntry, err error) error { return os.Lchown(p, 1234, 5678) })
	same := func(opts ...Option) bool {
		a, b := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
		build(t, rootOwned, a, opts...)
		build(t, userOwned, b, opts...)
		ba, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		return bytes.Equal(ba, bb)
	}
	if !same() {
		t.Errorf("default (all root): images of a root-owned and a 1234-owned tree differ, want equal")
	}
	if same(WithPreservedOwnership()) {
		t.Errorf("WithPreservedOwnership: images of a root-owned and a 1234-owned tree are equal, want different")
	}
	img := filepath.Join(dir, "p.img")
	build(t, userOwned, img, WithPreservedOwnership(), WithNormalizedPermissions())
	fi, err := os.Lstat(filepath.Join(extract(t, img), "etc/hostname"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("preserved owner of etc/hostname = %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
}
