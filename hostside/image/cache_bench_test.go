package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"confguest/rootfs/verity"
)

// benchTree is the tree the disk benchmarks convert: $CONFGUEST_BENCH_TREE, or 24 MiB of
// incompressible data in 256 files of 64 KiB and 2048 files of 4 KiB (as an image root
// of a few hundred packages' files would have), in 64 directories.
func benchTree(b *testing.B) string {
	if d := os.Getenv("CONFGUEST_BENCH_TREE"); d != "" {
		return d
	}
	root := b.TempDir()
	r := rand.New(rand.NewSource(1))
	write := func(i, size int) {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", i%64))
		os.MkdirAll(dir, 0o755)
		buf := make([]byte, size)
		r.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 256 {
		write(i, 64<<10)
	}
	for i := 256; i < 256+2048; i++ {
		write(i, 4<<10)
	}
	return root
}

// BenchmarkDiskCache times, alternating in each iteration on one tree: the peer (mkfs.erofs
// run directly as rootfs.Build runs it, plus verity.Format), BuildDisk of the directory
// without a cache, BuildDisk into an empty cache (the miss: the tree's digest on top),
// BuildDisk taking the disk from the cache (the tree's digest, timed also alone,
// a hard link and a full verification), and an OCI image of the same tree built cold (unpack included)
// into an empty cache and taken from the cache (layer digests, no layer read). It reports medians in ms and
// the ratios; run it with -benchtime 7x:
//
//	go test ./hostside/image -run '^$' -bench DiskCache -benchtime 7x
func BenchmarkDiskCache(b *testing.B) {
	ctx := context.Background()
	tree := benchTree(b)
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return tarOf(tree) })
	if err != nil {
		b.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		b.Fatal(err)
	}
	lay := writeLayout(b, img)
	work := b.TempDir()
	cache, err := OpenCache(filepath.Join(work, "cache"), 0)
	if err != nil {
		b.Fatal(err)
	}
	var peer, cold, miss, digest, hit, imgCold, imgMiss, imgHit []time.Duration
	timed := func(d *[]time.Duration, f func() error) {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		*d = append(*d, time.Since(start))
	}
	out := filepath.Join(work, "disk.img")
	b.ResetTimer()
	for i := range b.N {
		timed(&peer, func() error {
			os.Remove(out)
			cmd := exec.CommandContext(ctx, "mkfs.erofs", "-T0", "-U"+"00000000-0000-8000-8000-000000000000", "-x-1", "--quiet", out, tree)
			cmd.Env = []string{"LC_ALL=C"}
			if o, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("mkfs.erofs: %w: %s", err, o)
			}
			_, err := verity.Format(ctx, out)
			return err
		})
		timed(&cold, func() error {
			_, err := BuildDisk(ctx, Source{Dir, tree}, work, out)
			return err
		})
		fresh, err := OpenCache(filepath.Join(work, fmt.Sprintf("cache%d", i)), 0)
		if err != nil {
			b.Fatal(err)
		}
		timed(&miss, func() error {
			_, err := BuildDisk(ctx, Source{Dir, tree}, work, out, WithCache(fresh))
			return err
		})
		if i == 0 { // fill the cache
			if _, err := BuildDisk(ctx, Source{Dir, tree}, work, out, WithCache(cache)); err != nil {
				b.Fatal(err)
			}
		}
		timed(&digest, func() error {
			_, err := dirKey(tree)
			return err
		})
		timed(&hit, func() error {
			_, err := BuildDisk(ctx, Source{Dir, tree}, work, out, WithCache(cache))
			return err
		})
		timed(&imgCold, func() error {
			_, err := BuildDisk(ctx, Source{OCILayout, lay}, work, out)
			return err
		})
		timed(&imgMiss, func() error {
			_, err := BuildDisk(ctx, Source{OCILayout, lay}, work, out, WithCache(fresh))
			return err
		})
		if i == 0 {
			if _, err := BuildDisk(ctx, Source{OCILayout, lay}, work, out, WithCache(cache)); err != nil {
				b.Fatal(err)
			}
		}
		timed(&imgHit, func() error {
			_, err := BuildDisk(ctx, Source{OCILayout, lay}, work, out, WithCache(cache))
			return err
		})
		os.RemoveAll(fresh.Dir())
	}
	b.StopTimer()
	ms := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds()) / 1000
	}
	b.ReportMetric(ms(peer), "peer-ms")
	b.ReportMetric(ms(cold), "dir-cold-ms")
	b.ReportMetric(ms(miss), "dir-miss-ms")
	b.ReportMetric(ms(digest), "dir-digest-ms")
	b.ReportMetric(ms(hit), "dir-hit-ms")
	b.ReportMetric(ms(imgCold), "image-cold-ms")
	b.ReportMetric(ms(imgMiss), "image-miss-ms")
	b.ReportMetric(ms(imgHit), "image-hit-ms")
	b.ReportMetric(ms(cold)/ms(peer), "dir-cold/peer")
	b.ReportMetric(ms(hit)/ms(cold), "dir-hit/cold")
	b.ReportMetric(ms(imgHit)/ms(imgCold), "image-hit/cold")
}

// tarOf is a layer of the tree at dir.
func tarOf(dir string) (io.ReadCloser, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return io.NopCloser(&buf), nil
}
