package podbench

import (
	"archive/tar"
	"bytes"
	"compress/flate"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestParseCRILogLine(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    time.Time
		wantErr bool
	}{
		{line: "2026-12-06T10:31:02.123456789Z stdout F pod up", want: time.Date(2026, 12, 6, 10, 31, 2, 123456789, time.UTC)},
		{line: "2026-12-06T10:31:02.5+01:00 stdout F pod up", want: time.Date(2026, 12, 6, 9, 31, 2, 500000000, time.UTC)},
		{line: "2026-12-06T10:31:02Z stderr F sh: not found", wantErr: true},
		{line: "yesterday stdout F pod up", wantErr: true},
		{line: "2026-12-06T10:31:02Z stdout", wantErr: true},
	} {
		got, err := parseCRILogLine(tc.line)
		if (err != nil) != tc.wantErr || !got.Equal(tc.want) {
			t.Errorf("parseCRILogLine(%q) = %v, %v; want %v, error %t", tc.line, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseDiskNote(t *testing.T) {
	// Lines as the shim's log (logrus, quoted) holds them in containerd's log.
	for _, tc := range []struct {
		log  string
		want diskNote
	}{
		{log: `time="2026-12-06T10:31:02.1Z" level=info msg="confguest: disk taken from the disk cache /tmp/cgbench1/disks (key 0123456789abcdef, computed in 812ms; linked and verified in 1.204s)" runtime=io.containerd.confguest.v2` + "\n",
			want: diskNote{found: true, hit: true, key: 812 * time.Millisecond, disk: 1204 * time.Millisecond}},
		{log: "other line\n" + `msg="confguest: disk built into the disk cache /c/disks (key 0123456789abcdef, computed in 95.5µs; built and stored in 3.5s)"` + "\n",
			want: diskNote{found: true, key: 95500 * time.Nanosecond, disk: 3500 * time.Millisecond}},
		{log: `msg="confguest: building container disk from dir:/x"`, want: diskNote{}},
	} {
		got, err := parseDiskNote(tc.log)
		if err != nil || got != tc.want {
			t.Errorf("parseDiskNote(%q) = %+v, %v; want %+v", tc.log, got, err, tc.want)
		}
	}
}

func TestMedians(t *testing.T) {
	s := func(h string, second bool, run int, total time.Duration) sample {
		return sample{handler: h, image: busybox, second: second, run: run, p: podStart{runp: total}}
	}
	samples := []sample{
		s(confguest, true, 0, 10*time.Second), s(runc, true, 0, 1*time.Second),
		s(confguest, true, 1, 30*time.Second), s(runc, true, 1, 3*time.Second),
		s(confguest, true, 2, 20*time.Second), s(runc, true, 2, 5*time.Second),
		s(confguest, false, 0, 99*time.Second),
	}
	if got, n := medianOf(samples, is(confguest, busybox, true), total); got != 20*time.Second || n != 3 {
		t.Errorf("medianOf(confguest second) = %v of %d, want 20s of 3", got, n)
	}
	if got, n := medianOf(samples, is(runc, busybox, false), total); got != 0 || n != 0 {
		t.Errorf("medianOf(no samples) = %v of %d, want 0 of 0", got, n)
	}
	// Per-run ratios 10, 10, 4: the median is 10 (the ratio of the medians is 20/3).
	if got, n := medianRatio(samples, is(confguest, busybox, true), is(runc, busybox, true)); got != 10 || n != 3 {
		t.Errorf("medianRatio = %v of %d, want 10 of 3", got, n)
	}
	// Two runs: the lower middle one.
	if got, _ := medianOf(samples[:4], is(confguest, busybox, true), total); got != 10*time.Second {
		t.Errorf("medianOf(two samples) = %v, want the lower, 10s", got)
	}
}

func TestBigImage(t *testing.T) {
	const mib = 6
	img, err := bigImage(empty.Image, mib)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != bigLayers {
		t.Fatalf("bigImage has %d layers, want %d", len(layers), bigLayers)
	}
	var files, bytesIn int64
	var first []byte
	for _, l := range layers {
		mt, err := l.MediaType()
		if err != nil || mt != types.DockerUncompressedLayer {
			t.Errorf("layer media type = %q, %v; want %q", mt, err, types.DockerUncompressedLayer)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = b
			} else if bytes.Equal(b, first) {
				t.Errorf("file %s repeats the first file's content", h.Name)
			}
			files++
			bytesIn += int64(len(b))
		}
		rc.Close()
	}
	if bytesIn != mib<<20 || files != mib<<20/bigFileSize {
		t.Errorf("bigImage holds %d bytes in %d files, want %d in %d", bytesIn, files, mib<<20, mib<<20/bigFileSize)
	}
	// Incompressible: deflate gains nothing.
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	w.Write(first)
	w.Close()
	if z.Len() < len(first)*99/100 {
		t.Errorf("a file of %d bytes deflates to %d: want incompressible content", len(first), z.Len())
	}
	again, err := bigImage(empty.Image, mib)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("bigImage digests %s and %s: want one image every time", d1, d2)
	}
	if _, err := bigImage(empty.Image, bigLayers-1); err == nil {
		t.Errorf("bigImage(%d MiB) succeeded, want an error (fewer MiB than layers)", bigLayers-1)
	}
}

func TestParsePSS(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    pss
		wantErr bool
	}{
		{in: "55e0c0a00000-7ffd1c3f2000 ---p 00000000 00:00 0 [rollup]\nRss: 120 kB\nPss: 81234 kB\nPss_Dirty: 9 kB\nPss_Anon: 3 kB\nPss_File: 5 kB\nPss_Shmem: 81226 kB\n",
			want: pss{total: 81234, anon: 3, file: 5, shmem: 81226}},
		{in: "Rss: 120 kB\nPss: 7 kB\n", want: pss{total: 7}},
		{in: "Rss: 120 kB\n", wantErr: true},
		{in: "Pss: x kB\n", wantErr: true},
	} {
		got, err := parsePSS(strings.NewReader(tc.in))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parsePSS(%q) = %+v, %v; want %+v, error %t", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParsePPID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"42 (qemu-system-x86) S 17 42 42 0 -1", 17},
		{"43 (a (b) c) R 1 43 43 0", 1},
	} {
		if got, err := parsePPID(tc.in); err != nil || got != tc.want {
			t.Errorf("parsePPID(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := parsePPID("garbage"); err == nil {
		t.Errorf("parsePPID(%q) succeeded, want an error", "garbage")
	}
}

// fakeProc writes a /proc of processes: pid → (ppid, comm, cmdline, Pss kB).
func fakeProc(t *testing.T, procs map[int]struct {
	ppid          int
	comm, cmdline string
	pss           int
}) string {
	dir := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(dir, strconv.Itoa(pid))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "stat"), []byte(strconv.Itoa(pid)+" ("+p.comm+") S "+strconv.Itoa(p.ppid)+" 1 1 0"), 0o644)
		os.WriteFile(filepath.Join(d, "comm"), []byte(p.comm+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "cmdline"), []byte(strings.ReplaceAll(p.cmdline, " ", "\x00")+"\x00"), 0o644)
		os.WriteFile(filepath.Join(d, "smaps_rollup"), []byte("Rss: 1 kB\nPss: "+strconv.Itoa(p.pss)+" kB\n"), 0o644)
	}
	os.MkdirAll(filepath.Join(dir, "self"), 0o755)
	return dir
}

func TestPodProcs(t *testing.T) {
	type p = struct {
		ppid          int
		comm, cmdline string
		pss           int
	}
	proc := fakeProc(t, map[int]p{
		1:  {0, "systemd", "/sbin/init", 1000},
		10: {1, "containerd", "containerd --config x", 50000},
		20: {1, "containerd-shim", "/x/containerd-shim-confguest-v2 -namespace k8s.io -id podA -address /c.sock", 30000},
		21: {20, "qemu-system-x86", "qemu-system-x86_64 -accel tcg -m 512M -smp 1", 200000},
		22: {20, "vhost-device-vs", "vhost-device-vsock --vm guest-cid=3", 4000},
		23: {21, "child", "helper", 10},
		30: {1, "containerd-shim", "/x/containerd-shim-confguest-v2 -namespace k8s.io -id podB -address /c.sock", 31000},
		31: {30, "qemu-system-x86", "qemu-system-x86_64 -m 256M", 99999},
	})
	got, err := podProcs(proc, "containerd-shim-confguest-v2", "podA")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, m := range got {
		pids = append(pids, m.pid)
	}
	slices.Sort(pids)
	if !slices.Equal(pids, []int{20, 21, 22, 23}) {
		t.Errorf("podProcs(podA) = pids %v, want the shim 20 and everything below it: 21 22 23", pids)
	}
	m := podMemory{handler: confguest, procs: got}
	if m.sum().total != 234010 || vmMemory(got) != "512M" {
		t.Errorf("pod A: PSS %d KiB, VM -m %q; want 234010 and 512M", m.sum().total, vmMemory(got))
	}
	if _, err := podProcs(proc, "containerd-shim-runc-v2", "podA"); err == nil {
		t.Errorf("podProcs with the runc shim's name found a pod served by the confguest shim")
	}
	if _, err := podProcs(proc, "containerd-shim-confguest-v2", "podC"); err == nil {
		t.Errorf("podProcs(podC) succeeded, want an error: no shim serves it")
	}
}
