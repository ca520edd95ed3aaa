package rootfs

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBuildBadInput(t *testing.T) {
	small := []node{{path: "f", kind: "file", data: "x", mode: 0o644}}
	tests := []struct {
		name  string
		setup func(t *testing.T, src, out string) (srcArg, img string) // may replace paths
		opts  []Option
		mkfs  bool // the case gets as far as running mkfs.erofs
		want  error
		msg   []string // substrings of the message besides the sentinel's
	}{
		{name: "missing source", want: ErrUnreadable, msg: []string{"nope", "give an existing"},
			setup: func(t *testing.T, src, out string) (string, string) {
				return filepath.Join(src, "nope"), filepath.Join(out, "i.img")
			}},
		{name: "source is a file", want: ErrNotDir, msg: []string{"f", "give the directory"},
			setup: func(t *testing.T, src, out string) (string, string) {
				makeTree(t, src, small, time.Now())
				return filepath.Join(src, "f"), filepath.Join(out, "i.img")
			}},
		{name: "empty tree", want: ErrEmptyTree, msg: []string{"no files"}},
		{name: "file data over the limit", opts: []Option{WithMaxSize(1 << 20)}, want: ErrTooLarge,
			msg: []string{"1228800 bytes", "limit is 1048576", "raise the limit"},
			setup: func(t *testing.T, src, out string) (string, string) {
				makeTree(t, src, []node{
					{path: "a", kind: "file", data: strings.Repeat("a", 600<<10), mode: 0o644},
					{path: "b", kind: "file", data: strings.Repeat("b", 600<<10), mode: 0o644},
					{path: "c", kind: "hardlink", data: "a"}, // counted once
				}, time.Now())
				return src, filepath.Join(out, "i.img")
			}},
		{name: "image over the limit", opts: []Option{WithMaxSize(5000)}, mkfs: true, want: ErrTooLarge,
			msg: []string{"would be 8192 bytes", "limit is 5000"}},
		{name: "fifo", want: ErrSpecialFile, msg: []string{"pipe", "fifo", "WithSpecialFiles"},
			setup: func(t *testing.T, src, out string) (string, string) {
				makeTree(t, src, small, time.Now())
				if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o644); err != nil {
					t.Fatal(err)
				}
				return src, filepath.Join(out, "i.img")
			}},
		{name: "socket", want: ErrSpecialFile, msg: []string{"sock", "socket"},
			setup: func(t *testing.T, src, out string) (string, string) {
				makeTree(t, src, small, time.Now())
				l, err := net.Listen("unix", filepath.Join(src, "sock"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				return src, filepath.Join(out, "i.img")
			}},
		{name: "character device", want: ErrSpecialFile, msg: []string{"null", "character device"},
			setup: func(t *testing.T, src, out string) (string, string) {
				if os.Geteuid() != 0 {
					t.Skip("mknod of a character device needs root")
				}
				makeTree(t, src, small, time.Now())
				if err := syscall.Mknod(filepath.Join(src, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
					t.Fatal(err)
				}
				return src, filepath.Join(out, "i.img")
			}},
		{name: "image inside the source", want: ErrImageInSource, msg: []string{"outside the tree"},
			setup: func(t *testing.T, src, out string) (string, string) {
				makeTree(t, src, small, time.Now())
				return src, filepath.Join(src, "sub", "..", "i.img")
			}},
		{name: "mkfs.erofs missing", want: ErrMkfsMissing, msg: []string{"Debian package erofs-utils"},
			setup: func(t *testing.T, src, out string) (string, string) {
				makeTree(t, src, small, time.Now())
				t.Setenv("PATH", t.TempDir())
				return src, filepath.Join(out, "i.img")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mkfs {
				needTool(t, "mkfs.erofs", "erofs-utils")
			}
			dir := t.TempDir()
			src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
			os.Mkdir(src, 0o755)
			os.Mkdir(out, 0o755)
			srcArg, img := src, filepath.Join(out, "i.img")
			if tc.setup != nil {
				srcArg, img = tc.setup(t, src, out)
			} else if tc.name != "empty tree" {
				makeTree(t, src, small, time.Now())
			}
			_, err := Build(context.Background(), srcArg, img, tc.opts...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Build(%s) = %v, want %v", tc.name, err, tc.want)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Build(%s) = %q, want it to mention %q", tc.name, err, m)
				}
			}
			if left, _ := os.ReadDir(out); len(left) != 0 {
				t.Errorf("Build(%s) failed but left %d entries in %s (first %s), want none", tc.name, len(left), out, left[0].Name())
			}
		})
	}
}

func TestBuildSpecialFilesAllowed(t *testing.T) {
	needTool(t, "mkfs.erofs", "erofs-utils")
	for _, opts := range [][]Option{{WithSpecialFiles()}, {WithSpecialFiles(), WithNormalizedPermissions()}} {
		dir := t.TempDir()
		src := filepath.Join(dir, "src")
		makeTree(t, src, []node{{path: "f", kind: "file", data: "x", mode: 0o644}}, time.Now())
		if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600); err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(dir, "i.img")
		p := build(t, src, img, opts...)
		if err := Verify(img, p); err != nil {
			t.Errorf("Verify = %v", err)
		}
		fi, err := os.Lstat(filepath.Join(extract(t, img), "pipe"))
		if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("extracted pipe = %v, %v, want a fifo", fi, err)
		}
	}
}

// TestBuildUnreadable needs a user that permissions apply to. Run as root,
// it re-runs itself as nobody (65534) on a copy of the test binary.
func TestBuildUnreadable(t *testing.T) {
	if tree := os.Getenv("ROOTFS_TEST_UNREADABLE"); tree != "" {
		checkUnreadable(t, tree)
		return
	}
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // let nobody reach the trees
	}
	for _, c := range []struct{ tree, bad string }{{"file", "secret"}, {"dir", "locked"}} {
		src := filepath.Join(dir, c.tree)
		makeTree(t, src, []node{{path: "ok", kind: "file", data: "x", mode: 0o644}}, time.Now())
		if c.tree == "file" {
			os.WriteFile(filepath.Join(src, c.bad), []byte("x"), 0o644)
		} else {
			os.MkdirAll(filepath.Join(src, c.bad, "inner"), 0o755)
		}
		os.Chmod(filepath.Join(src, c.bad), 0)
	}
	if os.Geteuid() != 0 {
		checkUnreadable(t, dir)
		return
	}
	bin := filepath.Join(dir, "rootfs.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestBuildUnreadable$", "-test.v")
	cmd.Env = append(os.Environ(), "ROOTFS_TEST_UNREADABLE="+dir)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestBuildUnreadable") {
		t.Errorf("TestBuildUnreadable as nobody: %v\n%s", err, out)
	}
}

func checkUnreadable(t *testing.T, dir string) {
	out := t.TempDir()
	for _, c := range []struct{ tree, bad string }{{"file", "secret"}, {"dir", "locked"}} {
		_, err := Build(context.Background(), filepath.Join(dir, c.tree), filepath.Join(out, c.tree+".img"))
		if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), c.bad) || !strings.Contains(err.Error(), "make it readable") {
			t.Errorf("Build(tree with unreadable %s) = %v, want ErrUnreadable naming %s and the fix", c.tree, err, c.bad)
		}
	}
}
