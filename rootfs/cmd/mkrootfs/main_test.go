package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"confguest/rootfs"
)

func TestRun(t *testing.T) {
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mkfs.erofs not found: install the Debian package erofs-utils")
		}
		t.Skip("mkfs.erofs not found (Debian package erofs-utils)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc/hostname"), []byte("guest\n"), 0o644)
	img, params := filepath.Join(dir, "root.img"), filepath.Join(dir, "params.json")

	var out, errb bytes.Buffer
	if err := run(ctx, []string{"-salt", "abcd", src, img}, stdio{&out, &errb}); err != nil {
		t.Fatalf("run(build) = %v", err)
	}
	var p rootfs.Params
	if err := json.Unmarshal(out.Bytes(), &p); err != nil || p.Salt != "abcd" || p.Validate() != nil {
		t.Fatalf("run(build) printed %q (%v), want params with salt abcd", out.String(), err)
	}
	for _, field := range []string{"root_hash", "salt", "hash_offset", "data_blocks", "data_block_size", "hash_block_size", "algorithm", "uuid"} {
		if !strings.Contains(out.String(), `"`+field+`"`) {
			t.Errorf("run(build) output lacks field %q", field)
		}
	}
	os.WriteFile(params, out.Bytes(), 0o644)
	manifest := filepath.Join(dir, "manifest.json")
	os.WriteFile(manifest, []byte(`{"artifacts": [], "verity": `+out.String()+`}`), 0o644)

	tests := []struct {
		name string
		args []string
		want error // nil: success
	}{
		{"verify params", []string{"-verify", img, params}, nil},
		{"verify manifest", []string{"-verify", img, manifest}, nil},
		{"verify missing params", []string{"-verify", img, filepath.Join(dir, "nope.json")}, os.ErrNotExist},
		{"no arguments", nil, errUsage},
		{"both modes", []string{"-verify", "-format", img}, errUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(ctx, tc.args, stdio{&out, &errb})
			if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("run(%q) = %v, want %v", tc.args, err, tc.want)
			}
		})
	}

	b, _ := os.ReadFile(img)
	b[100] ^= 1 // data block 0
	os.WriteFile(img, b, 0o644)
	err := run(ctx, []string{"-verify", img, params}, stdio{&out, &errb})
	if !errors.Is(err, rootfs.ErrDataBlock) || !strings.Contains(err.Error(), "data block 0 ") {
		t.Errorf("run(-verify corrupt image) = %v, want ErrDataBlock naming data block 0", err)
	}

	file := filepath.Join(dir, "layer")
	os.WriteFile(file, bytes.Repeat([]byte("layer"), 3000), 0o644)
	out.Reset()
	if err := run(ctx, []string{"-format", "-salt", "-", file}, stdio{&out, &errb}); err != nil {
		t.Fatalf("run(-format) = %v", err)
	}
	var q rootfs.Params
	if err := json.Unmarshal(out.Bytes(), &q); err != nil || q.Salt != "" || rootfs.Verify(file, q) != nil {
		t.Errorf("run(-format -salt -) printed %q, want params with no salt that Verify accepts", out.String())
	}
}
