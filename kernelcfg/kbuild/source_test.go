package kbuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"confguest/kernelcfg/kconfig"
)

const testSHA = "9141325315c7f1eca682113d185a8c77c82814aa6e32f7e127e61d6106403835"

func TestReadSource(t *testing.T) {
	for _, tc := range []struct {
		name     string
		info     string // contents of dir.info; "" means no file
		tarballs []string
		want     Source // Tarball relative to dir
		wantErr  string
	}{
		{
			name:     "debfetch layout",
			info:     "linux-source-6.12 6.12.117-1 " + testSHA + "\n",
			tarballs: []string{"linux-source-6.12.tar.xz"},
			want:     Source{"linux-source-6.12", "6.12.117-1", testSHA, "usr/src/linux-source-6.12.tar.xz"},
		},
		{name: "no info file", tarballs: []string{"linux-source-6.12.tar.xz"}, wantErr: "debpin.sh"},
		{name: "short info", info: "linux-source-6.12 6.12.117-1\n", tarballs: []string{"linux-source-6.12.tar.xz"}, wantErr: "is not \"name version sha256\""},
		{name: "bad digest", info: "linux-source-6.12 6.12.117-1 abc\n", tarballs: []string{"linux-source-6.12.tar.xz"}, wantErr: "is not \"name version sha256\""},
		{name: "no tarball", info: "linux-source-6.12 6.12.117-1 " + testSHA, wantErr: "found 0"},
		{name: "two tarballs", info: "linux-source-6.12 6.12.117-1 " + testSHA, tarballs: []string{"linux-source-6.12.tar.xz", "linux-source-6.13.tar.xz"}, wantErr: "found 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pkg")
			if err := os.MkdirAll(filepath.Join(dir, "usr/src"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, tb := range tc.tarballs {
				if err := os.WriteFile(filepath.Join(dir, "usr/src", tb), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.info != "" {
				if err := os.WriteFile(dir+".info", []byte(tc.info), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadSource(dir + "/")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ReadSource(%q) error = %v, want one containing %q", dir, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadSource(%q) error = %v", dir, err)
			}
			tc.want.Tarball = filepath.Join(dir, tc.want.Tarball)
			if got != tc.want {
				t.Errorf("ReadSource(%q) = %+v, want %+v", dir, got, tc.want)
			}
		})
	}
}

func TestReproducibleEnv(t *testing.T) {
	src := t.TempDir()
	mk := filepath.Join(src, "Makefile")
	if err := os.WriteFile(mk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	date := time.Date(2025, 11, 12, 9, 30, 0, 0, time.UTC)
	if err := os.Chtimes(mk, date, date); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ARCH", "arm64")
	t.Setenv("KCFLAGS", "-O0")
	t.Setenv("MAKEFLAGS", "-j64")
	env, err := reproducibleEnv(src)
	if err != nil {
		t.Fatalf("reproducibleEnv: %v", err)
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	for k, want := range map[string]string{
		"SOURCE_DATE_EPOCH":      "1762939800",
		"KBUILD_BUILD_TIMESTAMP": "Wed Nov 12 09:30:00 UTC 2025",
		"KBUILD_BUILD_USER":      "confguest",
		"KBUILD_BUILD_HOST":      "confguest",
		"TZ":                     "UTC",
		"LC_ALL":                 "C",
	} {
		if vars[k] != want {
			t.Errorf("reproducibleEnv(%q)[%s] = %q, want %q", src, k, vars[k], want)
		}
	}
	for _, k := range []string{"ARCH", "KCFLAGS", "MAKEFLAGS"} {
		if v, ok := vars[k]; ok {
			t.Errorf("reproducibleEnv(%q) passes the caller's %s=%q through, want it dropped", src, k, v)
		}
	}
}

func TestCheckConfigListsEveryDroppedOption(t *testing.T) {
	conf := filepath.Join(t.TempDir(), ".config")
	if err := os.WriteFile(conf, []byte("CONFIG_VIRTIO=y\nCONFIG_SEV_GUEST=m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	frag, err := kconfig.ParseFragment(strings.NewReader("CONFIG_VIRTIO=y\nCONFIG_EROFS_FS=y\nCONFIG_SEV_GUEST=y\nCONFIG_VSOCKETS=y\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = checkConfig(frag, conf, "guest.config")
	if err == nil {
		t.Fatalf("checkConfig = nil, want the dropped options listed")
	}
	for _, want := range []string{"3 of 4 options", "CONFIG_EROFS_FS=y (line 2): dropped", "CONFIG_SEV_GUEST=y (line 3): changed to m", "CONFIG_VSOCKETS=y (line 4): dropped"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("checkConfig error = %q, want it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "CONFIG_VIRTIO=y") {
		t.Errorf("checkConfig error = %q, lists CONFIG_VIRTIO which was kept", err)
	}
}

func TestReadCached(t *testing.T) {
	img := []byte("bzImage bytes")
	for _, tc := range []struct {
		name    string
		json    string // "" means no kernel.json
		image   []byte // nil means no bzImage
		wantErr string
	}{
		{name: "complete entry", json: `{"bzimage_sha256":"` + sha256Hex(img) + `"}`, image: img},
		{name: "no kernel.json (interrupted build)", image: img, wantErr: "no such file"},
		{name: "no bzImage", json: `{"bzimage_sha256":"` + sha256Hex(img) + `"}`, wantErr: "cached bzImage"},
		{name: "bzImage changed since", json: `{"bzimage_sha256":"` + sha256Hex(img) + `"}`, image: []byte("other"), wantErr: "kernel.json says"},
		{name: "corrupt kernel.json", json: `{`, image: img, wantErr: "kernel.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.json != "" {
				if err := os.WriteFile(filepath.Join(dir, "kernel.json"), []byte(tc.json), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.image != nil {
				if err := os.WriteFile(filepath.Join(dir, "bzImage"), tc.image, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			info, err := readCached(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("readCached(%s) error = %v, want one containing %q", tc.name, err, tc.wantErr)
				}
				return
			}
			if err != nil || info.BzImageSHA256 != sha256Hex(img) {
				t.Errorf("readCached(%s) = %+v, %v, want sha256 %s", tc.name, info, err, sha256Hex(img))
			}
		})
	}
}
