package guestimage

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"sort"

	"github.com/u-root/u-root/pkg/cpio"
)

// initramfsFile is one regular file of the initramfs.
type initramfsFile struct {
	name string
	data []byte
	perm uint64
}

// writeInitramfs returns a gzip-compressed newc cpio archive holding the given files, the
// directories the kernel and PID 1 need before devtmpfs is mounted, and /dev/console.
// Files sit at the top level or below directories listed here.
// Entries are sorted, normalised by cpio.MakeReproducible, and compressed with fixed gzip
// headers, so the same files always give the same bytes.
func writeInitramfs(files []initramfsFile) ([]byte, error) {
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o555),
		cpio.Directory("sys", 0o555),
		cpio.Directory("run", 0o755),
		cpio.Directory("newroot", 0o755),
	}
	for _, f := range files {
		recs = append(recs, cpio.StaticFile(f.name, string(f.data), f.perm))
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	for i := range recs {
		recs[i] = cpio.MakeReproducible(recs[i])
		// Inode numbers come from the record order, not from the build machine.
		recs[i].Ino = uint64(i + 1)
	}

	var archive bytes.Buffer
	w := cpio.Newc.Writer(&archive)
	if err := cpio.WriteRecords(w, recs); err != nil {
		return nil, fmt.Errorf("write initramfs records: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("write initramfs trailer: %w", err)
	}

	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	// No name, no modification time, OS "unknown": the header carries nothing of the build.
	zw.Header = gzip.Header{OS: 255}
	if _, err := zw.Write(archive.Bytes()); err != nil {
		return nil, fmt.Errorf("compress initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress initramfs: %w", err)
	}
	return out.Bytes(), nil
}
