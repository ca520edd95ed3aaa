package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"confguest/rootfs"
)

// fakeGuest writes a guest image directory the way make image lays it out, with a real
// erofs + verity rootfs.img, and returns its path.
func fakeGuest(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "init"), []byte("#!/bin/sh\n"), 0o755)
	params, err := rootfs.Build(context.Background(), src, filepath.Join(dir, "rootfs.img"))
	if err != nil {
		t.Fatalf("rootfs.Build: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bzImage"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "initramfs.cpio.gz"), []byte("initramfs"), 0o644)
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte("console=ttyS0 confguest.root="+params.RootHash+"\n"), 0o644)
	m := Manifest{Verity: params}
	for _, n := range requiredArtifacts {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		m.Artifacts = append(m.Artifacts, Artifact{Name: n, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	b, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644)
	return dir
}

func TestCheckGuest(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(t *testing.T, dir string)
		wantErr error
		wantIn  string
	}{
		{"intact", func(*testing.T, string) {}, nil, ""},
		{"kernel changed", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "bzImage"), []byte("kernel!"), 0o644)
		}, ErrTampered, "bzImage"},
		{"cmdline changed, same size", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
			b[0] = 'C'
			os.WriteFile(filepath.Join(dir, "cmdline"), b, 0o644)
		}, ErrTampered, "cmdline"},
		{"rootfs flipped byte, manifest updated", func(t *testing.T, dir string) {
			// An attacker who rewrites manifest digests still fails the verity check.
			p := filepath.Join(dir, "rootfs.img")
			b, _ := os.ReadFile(p)
			b[1024+100] ^= 0xff
			os.WriteFile(p, b, 0o644)
			var m Manifest
			mb, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
			json.Unmarshal(mb, &m)
			sum := sha256.Sum256(b)
			for i := range m.Artifacts {
				if m.Artifacts[i].Name == "rootfs.img" {
					m.Artifacts[i].SHA256 = hex.EncodeToString(sum[:])
				}
			}
			mb, _ = json.Marshal(m)
			os.WriteFile(filepath.Join(dir, "manifest.json"), mb, 0o644)
		}, ErrTampered, "rootfs.img"},
		{"initramfs missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "initramfs.cpio.gz"))
		}, ErrTampered, "initramfs.cpio.gz"},
		{"artifact escapes", func(t *testing.T, dir string) {
			var m Manifest
			mb, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
			json.Unmarshal(mb, &m)
			m.Artifacts = append(m.Artifacts, Artifact{Name: "../etc/passwd"})
			mb, _ = json.Marshal(m)
			os.WriteFile(filepath.Join(dir, "manifest.json"), mb, 0o644)
		}, ErrTampered, "../etc/passwd"},
		{"no manifest", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "manifest.json"))
		}, os.ErrNotExist, "make image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := fakeGuest(t)
			tc.tamper(t, dir)
			g, err := CheckGuest(context.Background(), dir)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckGuest(%q) = %v, want nil", dir, err)
				}
				if c, err := g.Cmdline(); err != nil || !strings.Contains(c, g.Manifest.Verity.RootHash) || strings.HasSuffix(c, "\n") {
					t.Errorf("Cmdline() = %q, %v, want the trimmed command line", c, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("CheckGuest(%q) = %v, want %v naming %q", dir, err, tc.wantErr, tc.wantIn)
			}
		})
	}
}
