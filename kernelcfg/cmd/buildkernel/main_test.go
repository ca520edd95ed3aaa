package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Invocations that must fail before any source is fetched or built, each with a message
// that names the input and what to do.
func TestRunRejectsBadInvocations(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no output", args: []string{"-cache", dir}, wantErr: "pass -o FILE"},
		{name: "positional argument", args: []string{"-o", filepath.Join(dir, "bzImage"), "extra"}, wantErr: `unexpected arguments ["extra"]`},
		{name: "unknown flag", args: []string{"-frobnicate"}, wantErr: "flag provided but not defined"},
		{name: "missing fragment", args: []string{"-o", filepath.Join(dir, "bzImage"), "-fragment", filepath.Join(dir, "nope.config")}, wantErr: "reading fragment"},
		{name: "source without package description", args: []string{"-o", filepath.Join(dir, "bzImage"), "-source", dir}, wantErr: "fetch it with build/debpin.sh"},
		{name: "write-final without config-only", args: []string{"-o", filepath.Join(dir, "bzImage"), "-write-final", filepath.Join(dir, "final.config")}, wantErr: "-write-final needs -config-only"},
		{name: "lock missing", args: []string{"-o", filepath.Join(dir, "bzImage"), "-source", fakeSource(t), "-toolchain", filepath.Join(dir, "none.lock")}, wantErr: "pass -toolchain FILE"},
		{name: "fetcher missing", args: []string{"-o", filepath.Join(dir, "bzImage"), "-debpin", filepath.Join(dir, "debpin.sh")}, wantErr: "run from the repository root, or pass -source DIR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
			}
		})
	}
}

// fakeSource lays out an unpacked source package as build/debfetch.sh leaves it, enough for
// ReadSource; nothing is built from it.
func fakeSource(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "linux-source-6.12_6.12.117-1")
	if err := os.MkdirAll(filepath.Join(dir, "usr/src"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "usr/src/linux-source-6.12.tar.xz"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	info := "linux-source-6.12 6.12.117-1 9141325315c7f1eca682113d185a8c77c82814aa6e32f7e127e61d6106403835\n"
	if err := os.WriteFile(dir+".info", []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A lock that pins make at a version no machine has: the build refuses before building,
// naming the tool, the installed version and the pin, with this machine's real dpkg database.
func TestRunRefusesUnpinnedTool(t *testing.T) {
	installed, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "make").Output()
	if err != nil {
		t.Skipf("no Debian make package on this machine: %v", err)
	}
	dir := t.TempDir()
	lock := filepath.Join(dir, "toolchain.lock")
	const pin = "make 0.0-not-this-one a1a83af8cbd854af887b72ad196b1f4af58387815e21ced1000253a116a46e2a kernel make # runs the kernel build\n"
	if err := os.WriteFile(lock, []byte(pin), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	err = run(context.Background(), []string{"-o", filepath.Join(dir, "bzImage"), "-cache", cache, "-source", fakeSource(t), "-toolchain", lock}, io.Discard, io.Discard)
	want := "make: version " + string(installed) + " installed, pinned 0.0-not-this-one (runs the kernel build)"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), lock) {
		t.Errorf("run with make pinned to 0.0-not-this-one = %v, want a refusal containing %q and naming %s", err, want, lock)
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Errorf("the refused build created its cache %s (stat: %v), want nothing built", cache, err)
	}
}
