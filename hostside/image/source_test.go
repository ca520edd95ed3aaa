package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"confguest/rootfs"
)

// entry is one tar entry of a test layer.
type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func layerOf(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			io.WriteString(tw, e.body)
		}
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = []string{"/bin/tool"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// testImage has two layers exercising overwrite, whiteout, opaque dirs and links.
func testImage(t *testing.T) v1.Image {
	return imageOf(t,
		layerOf(t,
			entry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
			entry{name: "etc/hello", body: "hello\n"},
			entry{name: "bin/", typ: tar.TypeDir, mode: 0o755},
			entry{name: "bin/tool", body: "#!/bin/sh\n", mode: 0o4755},
			entry{name: "bin/link", typ: tar.TypeSymlink, link: "tool"},
			entry{name: "bin/hard", typ: tar.TypeLink, link: "bin/tool"},
			entry{name: "old/", typ: tar.TypeDir, mode: 0o755},
			entry{name: "old/gone", body: "x"},
			entry{name: "opq/", typ: tar.TypeDir, mode: 0o755},
			entry{name: "opq/a", body: "a"},
			entry{name: "ro/", typ: tar.TypeDir, mode: 0o555},
			entry{name: "ro/f", body: "f"},
		),
		layerOf(t,
			entry{name: "etc/hello", body: "hello again\n"},
			entry{name: "old/.wh.gone"},
			entry{name: "opq/", typ: tar.TypeDir, mode: 0o755},
			entry{name: "opq/.wh..wh..opq"},
			entry{name: "opq/b", body: "b"},
		),
	)
}

func checkTree(t *testing.T, dir string) {
	t.Helper()
	want := map[string]string{"etc/hello": "hello again\n", "opq/b": "b", "bin/tool": "#!/bin/sh\n", "ro/f": "f"}
	for f, body := range want {
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || string(got) != body {
			t.Errorf("unpacked %s = %q, %v, want %q", f, got, err, body)
		}
	}
	for _, f := range []string{"old/gone", "opq/a", "old/.wh.gone", "opq/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("unpacked %s exists (%v), want it whited out", f, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/link")); err != nil || l != "tool" {
		t.Errorf("bin/link = %q, %v, want symlink to tool", l, err)
	}
	a, _ := os.Stat(filepath.Join(dir, "bin/tool"))
	b, _ := os.Stat(filepath.Join(dir, "bin/hard"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Errorf("bin/hard is not a hard link of bin/tool")
	}
	if a != nil && a.Mode()&os.ModeSetuid == 0 {
		t.Errorf("bin/tool mode = %v, want setuid kept", a.Mode())
	}
	if st, err := os.Stat(filepath.Join(dir, "ro")); err != nil || st.Mode().Perm() != 0o555 {
		t.Errorf("ro mode = %v, %v, want 0555", st.Mode(), err)
	}
}

func writeLayout(t testing.TB, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithPlatform(Platform)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func layerBlob(t *testing.T, dir string, img v1.Image) string {
	t.Helper()
	ls, _ := img.Layers()
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "blobs", d.Algorithm, d.Hex)
}

func TestLoadAndUnpack(t *testing.T) {
	img := testImage(t)
	ctx := context.Background()

	archive := filepath.Join(t.TempDir(), "img.tar")
	tag, _ := name.NewTag("confguest.test/demo:1")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/demo/app:v1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}

	for _, src := range []Source{
		{OCILayout, writeLayout(t, img)},
		{DockerArchive, archive},
		OCISource(archive),
		{Registry, ref},
	} {
		t.Run(string(src.Kind), func(t *testing.T) {
			got, err := Load(ctx, src)
			if err != nil {
				t.Fatalf("Load(%v) = %v", src, err)
			}
			dir := t.TempDir()
			if err := Unpack(ctx, got, dir); err != nil {
				t.Fatalf("Unpack(%v) = %v", src, err)
			}
			checkTree(t, dir)
			// t.TempDir is 0700: an image's root is 0755, as containerd unpacks it.
			if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("Unpack(%v): root mode %v (%v), want 0755", src, st.Mode(), err)
			}
		})
	}
}

func TestLoadBadInput(t *testing.T) {
	img := testImage(t)
	ctx := context.Background()
	missingBlob := writeLayout(t, img)
	os.Remove(layerBlob(t, missingBlob, img))
	mismatch := writeLayout(t, img)
	if err := os.WriteFile(layerBlob(t, mismatch, img), []byte("not the layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	notArchive := filepath.Join(t.TempDir(), "x.tar")
	os.WriteFile(notArchive, []byte("garbage"), 0o644)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()

	tests := []struct {
		name    string
		src     Source
		wantErr error
		wantIn  string
	}{
		{"layout without index.json", Source{OCILayout, t.TempDir()}, ErrSource, "not an OCI image layout"},
		{"missing layout", Source{OCILayout, "/nonexistent/layout"}, ErrSource, "/nonexistent/layout"},
		{"missing blob", Source{OCILayout, missingBlob}, ErrSource, "layer 0"},
		{"digest mismatch", Source{OCILayout, mismatch}, ErrDigest, "blob hashes to"},
		{"missing archive", Source{DockerArchive, "/nonexistent.tar"}, ErrSource, "/nonexistent.tar"},
		{"not an archive", Source{DockerArchive, notArchive}, ErrSource, notArchive},
		{"bad reference", Source{Registry, "UPPER/Case::x"}, ErrSource, "image reference"},
		{"image not in registry", Source{Registry, strings.TrimPrefix(reg.URL, "http://") + "/no/such:tag"}, ErrSource, "pull"},
		{"unknown kind", Source{"ftp", "x"}, ErrSource, "want dir, oci"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(ctx, tc.src)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("Load(%v) = %v, want %v mentioning %q", tc.src, err, tc.wantErr, tc.wantIn)
			}
		})
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name  string
		layer []entry
	}{
		{"dot-dot", []entry{{name: "../escape", body: "x"}}},
		{"through symlink", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/x", body: "x"},
		}},
		{"hard link out", []entry{{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "root")
			os.Mkdir(dir, 0o755)
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, e := range tc.layer {
				h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
				if h.Typeflag == 0 {
					h.Typeflag = tar.TypeReg
				}
				tw.WriteHeader(h)
				io.WriteString(tw, e.body)
			}
			tw.Close()
			err := unpackTar(context.Background(), &buf, dir)
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("unpackTar(%s) = %v, want ErrUnsafePath", tc.name, err)
			}
			for _, p := range []string{filepath.Join(parent, "escape"), filepath.Join(outside, "x")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("unpackTar(%s) wrote %s outside the root", tc.name, p)
				}
			}
		})
	}
}

func TestBuildDisk(t *testing.T) {
	ctx := context.Background()
	work := t.TempDir()
	lay := writeLayout(t, testImage(t))
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "hello"), []byte("hi\n"), 0o644)
	for _, s := range []Source{{OCILayout, lay}, {Dir, src}} {
		t.Run(string(s.Kind), func(t *testing.T) {
			img := filepath.Join(work, string(s.Kind)+".img")
			d, err := BuildDisk(ctx, s, work, img)
			if err != nil {
				t.Fatalf("BuildDisk(%v) = %v", s, err)
			}
			if err := rootfs.Verify(img, d.Verity); err != nil {
				t.Errorf("rootfs.Verify(BuildDisk(%v)) = %v", s, err)
			}
			if wantCmd := s.Kind == OCILayout; wantCmd != (len(d.Config.Cmd) == 1 && d.Config.Cmd[0] == "/bin/tool") {
				t.Errorf("BuildDisk(%v).Config.Cmd = %q, want the image's cmd for images only", s, d.Config.Cmd)
			}
		})
	}
	ents, _ := os.ReadDir(work)
	if len(ents) != 2 {
		t.Errorf("work dir after BuildDisk holds %d entries, want only the 2 images (no unpack leftovers)", len(ents))
	}
	for _, s := range []Source{{Dir, "/nonexistent/rootfs"}, {Dir, filepath.Join(src, "hello")}} {
		_, err := BuildDisk(ctx, s, work, filepath.Join(work, "bad.img"))
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), s.Ref) {
			t.Errorf("BuildDisk(%v) = %v, want ErrSource naming the directory", s, err)
		}
	}
}

// TestBuildDiskDebootstrapDev: a directory whose dev/ holds special files (as debootstrap
// leaves them) builds, with one note saying what was left out; a fifo elsewhere is refused.
func TestBuildDiskDebootstrapDev(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	for _, d := range []string{"dev", "etc"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"dev/initctl", "dev/xconsole"} {
		if err := syscall.Mkfifo(filepath.Join(root, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var notes []string
	work := t.TempDir()
	if _, err := BuildDisk(ctx, Source{Kind: Dir, Ref: root}, work, filepath.Join(work, "d.img"), WithNote(func(l string) { notes = append(notes, l) })); err != nil {
		t.Fatalf("BuildDisk(root with fifos in dev/) = %v", err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "left out 2 device nodes, fifos and sockets") || !strings.Contains(notes[0], "dev/initctl") {
		t.Errorf("BuildDisk notes = %q, want one line naming the 2 files left out", notes)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "etc", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := BuildDisk(ctx, Source{Kind: Dir, Ref: root}, work, filepath.Join(work, "e.img")); !errors.Is(err, rootfs.ErrSpecialFile) {
		t.Errorf("BuildDisk(root with a fifo in etc/) = %v, want rootfs.ErrSpecialFile", err)
	}
}
