package conformance

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
)

// tarEntries lists "name type link" of each tar header in order.
func tarEntries(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimSpace(h.Name+" "+string(h.Typeflag)+" "+h.Linkname))
	}
}

func TestTreeTar(t *testing.T) {
	tr := newTree()
	tr.file("/bin/busybox", 0o755, []byte("elf"))
	tr.hardlink("bin/ash", "/bin/busybox")
	tr.symlink("var/run", "/run")
	tr.dir("tmp")
	b, err := tr.tar()
	if err != nil {
		t.Fatal(err)
	}
	// Directories before what they hold, hard links after the files they name.
	want := []string{"bin/ 5", "bin/busybox 0", "tmp/ 5", "var/ 5", "var/run 2 /run", "bin/ash 1 bin/busybox"}
	if got := tarEntries(t, b); !reflect.DeepEqual(got, want) {
		t.Errorf("tar entries = %q, want %q", got, want)
	}
	again, _ := tr.tar()
	if !bytes.Equal(b, again) {
		t.Error("two tars of one tree differ")
	}
}

func TestTreeTarDanglingHardlink(t *testing.T) {
	tr := newTree()
	tr.hardlink("bin/ls", "bin/busybox")
	if _, err := tr.tar(); err == nil || !strings.Contains(err.Error(), "bin/busybox") {
		t.Errorf("tar of a hard link to a missing file: error %v, want one naming bin/busybox", err)
	}
}

// addProgram carries a dynamic program's libraries and interpreter; the host's ipcs
// (util-linux) needs libc and ld.so, and libc loads libgcc_s with dlopen.
func TestAddProgram(t *testing.T) {
	const ipcs = "/usr/bin/ipcs"
	if _, err := os.Stat(ipcs); err != nil {
		t.Skipf("%s: %v", ipcs, err)
	}
	tr := newTree()
	if err := tr.addProgram("usr/bin/ipcs", ipcs, []string{"/"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"usr/bin/ipcs", "usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib64/ld-linux-x86-64.so.2",
		"usr/lib/x86_64-linux-gnu/libgcc_s.so.1"} {
		if !tr.has(p) {
			t.Errorf("addProgram(%s): the tree has no %s", ipcs, p)
		}
	}
	if err := tr.addProgram("usr/bin/x", ipcs, []string{t.TempDir()}); err == nil {
		t.Errorf("addProgram with roots lacking libc: no error")
	}
}
