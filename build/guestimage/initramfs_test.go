package guestimage

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

func TestWriteInitramfsReproducibleAndComplete(t *testing.T) {
	files := []initramfsFile{{name: "init", data: []byte("#!/bin/false\n"), perm: 0o755}}
	a, err := writeInitramfs(files)
	if err != nil {
		t.Fatalf("writeInitramfs: %v", err)
	}
	b, err := writeInitramfs(files)
	if err != nil {
		t.Fatalf("writeInitramfs: %v", err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("two initramfs builds of the same files differ")
	}
	other, err := writeInitramfs([]initramfsFile{{name: "init", data: []byte("#!/bin/true\n"), perm: 0o755}})
	if err != nil {
		t.Fatalf("writeInitramfs: %v", err)
	}
	if bytes.Equal(a, other) {
		t.Fatalf("initramfs of different /init contents are identical")
	}

	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatalf("gzip header: %v", err)
	}
	if zr.Header.Name != "" || !zr.Header.ModTime.IsZero() {
		t.Errorf("gzip header carries name %q, mtime %v; want none", zr.Header.Name, zr.Header.ModTime)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("read cpio: %v", err)
	}
	got := map[string]cpio.Record{}
	var names []string
	for _, r := range recs {
		got[r.Name] = r
		names = append(names, r.Name)
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("record %q: mtime %d uid %d gid %d, want all zero", r.Name, r.MTime, r.UID, r.GID)
		}
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("records not sorted: %q before %q", names[i-1], names[i])
		}
	}
	init, ok := got["init"]
	if !ok {
		t.Fatalf("no /init in %v", names)
	}
	if init.Mode&0o777 != 0o755 {
		t.Errorf("/init mode %o, want 755", init.Mode&0o777)
	}
	content, err := io.ReadAll(io.NewSectionReader(init.ReaderAt, 0, int64(init.FileSize)))
	if err != nil || string(content) != "#!/bin/false\n" {
		t.Errorf("/init content = %q, %v; want %q", content, err, "#!/bin/false\n")
	}
	console, ok := got["dev/console"]
	if !ok || console.Rmajor != 5 || console.Rminor != 1 {
		t.Errorf("dev/console = %+v (present %v), want char device 5:1", console.Info, ok)
	}
}
