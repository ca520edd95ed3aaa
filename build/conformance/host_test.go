package conformance

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// The shared flags take the command's bridge and subnet as defaults, and Resolve roots the
// repository at the working directory and makes the image and shim absolute.
func TestHostFlagsResolve(t *testing.T) {
	var h Host
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	h.Flags(fs, "cgtest0", "10.88.70.0/24")
	if err := fs.Parse([]string{"-shim", "bin/shim", "-accel", "tcg"}); err != nil {
		t.Fatal(err)
	}
	if err := h.Resolve(); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	want := Host{Repo: wd, ImageDir: filepath.Join(wd, "out"), Shim: filepath.Join(wd, "bin/shim"),
		Bridge: "cgtest0", Subnet: "10.88.70.0/24", Accel: "tcg"}
	if h != want {
		t.Errorf("after flags and Resolve: %+v, want %+v", h, want)
	}
}
