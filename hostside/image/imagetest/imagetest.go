// Package imagetest writes guest image directories for the host side's tests.
package imagetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"confguest/hostside/image"
	"confguest/rootfs"
)

// Guest writes a guest image directory as make image lays it out and returns its path: a
// real erofs + dm-verity rootfs.img, stand-ins for the kernel and the initramfs (nothing
// boots them), a command line naming the root hash, and manifest.json with their digests.
// bzImage, if not nil, replaces the kernel stand-in.
func Guest(t testing.TB, bzImage []byte) string {
	t.Helper()
	dir, src := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "init"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	params, err := rootfs.Build(context.Background(), src, filepath.Join(dir, "rootfs.img"))
	if err != nil {
		t.Fatalf("rootfs.Build: %v", err)
	}
	if bzImage == nil {
		bzImage = []byte("kernel")
	}
	files := map[string][]byte{
		"bzImage":           bzImage,
		"initramfs.cpio.gz": []byte("initramfs"),
		"cmdline":           []byte("console=ttyS0 confguest.roothash=" + params.RootHash + "\n"),
	}
	m := image.Manifest{Verity: params}
	for _, n := range []string{"bzImage", "initramfs.cpio.gz", "rootfs.img", "cmdline"} {
		if b, ok := files[n]; ok {
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		m.Artifacts = append(m.Artifacts, image.Artifact{Name: n, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
