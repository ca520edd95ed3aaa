package guestimage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"confguest/rootfs"
)

func TestCmdlineCarriesVerityParameters(t *testing.T) {
	p := rootfs.Params{RootHash: "ab12", Salt: "cd34", DataBlocks: 7, HashOffset: 28672}
	got := Cmdline(p)
	for _, want := range []string{"console=ttyS0", "confguest.root=/dev/vda", "confguest.roothash=ab12", "confguest.salt=cd34", "confguest.datablocks=7", "confguest.hashoffset=28672"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("Cmdline(%+v) = %q, want it to contain %q", p, got, want)
		}
	}
}

func TestDescribeArtifactsAndSums(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"b": "hello\n", "a": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	arts, err := describeArtifacts(dir, []string{"b", "a"})
	if err != nil {
		t.Fatalf("describeArtifacts: %v", err)
	}
	want := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a\n" +
		"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  b\n"
	if got := sha256Sums(arts); got != want {
		t.Errorf("sha256Sums = %q, want %q", got, want)
	}
	if arts[1].Size != 6 {
		t.Errorf("size of b = %d, want 6", arts[1].Size)
	}
	if _, err := describeArtifacts(dir, []string{"missing"}); err == nil {
		t.Errorf("describeArtifacts(missing) = nil error, want one naming the artifact")
	}
}

func TestPinnedPackagesRejectsMalformedLines(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "packages.lock")
	os.WriteFile(lock, []byte("# c\ntrixie linux-source-6.12 6.12.117-1 abcd\nunstable other 1 ef\n"), 0o644)
	got, err := pinnedPackages(lock, map[string]string{"linux-source-6.12": "kernel"})
	if err != nil || len(got) != 1 || got[0].Version != "6.12.117-1" || got[0].Suite != "trixie" {
		t.Errorf("pinnedPackages = %+v, %v; want the one linux-source pin", got, err)
	}
	os.WriteFile(lock, []byte("trixie linux-source-6.12\n"), 0o644)
	if _, err := pinnedPackages(lock, nil); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("pinnedPackages(malformed) = %v, want an error naming line 1", err)
	}
}
