package qemutests

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"confguest/agent/api/policy"
	"confguest/hostside/launcher"
	"confguest/hostside/vmm"
)

// TestDiskCacheSharedBetweenPods: two sandboxes of one rootfs share one cached disk (the
// second's disk is the first's inode: the cache entry and both run directories link it),
// and the guest runs a container from that disk under a policy pinning its root hash.
func TestDiskCacheSharedBetweenPods(t *testing.T) {
	img := needImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cache := t.TempDir()
	root := busyboxRoot(t)
	vhost := vhostDeviceVsock(t)
	var disks []launcher.Disk
	var sbs []*launcher.Sandbox
	for range 2 {
		base, err := os.MkdirTemp("", "cg")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(base) })
		sb, err := launcher.New(ctx, launcher.Options{
			ImageDir: img.Dir, Accel: vmm.AccelTCG, MemoryMiB: 256, RunBase: base, CacheDir: cache,
			QEMU: []vmm.QEMUOption{vmm.WithVhostDeviceVsock(vhost)},
		})
		if err != nil {
			t.Fatalf("launcher.New: %v", err)
		}
		t.Cleanup(func() { sb.Close(context.Background()) })
		d := dirDisk(ctx, t, sb, root)
		disks, sbs = append(disks, d), append(sbs, sb)
	}
	var inodes, links []uint64
	for _, d := range disks {
		fi, err := os.Stat(d.Path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		inodes, links = append(inodes, st.Ino), append(links, uint64(st.Nlink))
	}
	if inodes[0] != inodes[1] || links[1] != 3 {
		t.Errorf("second pod's disk %s: inode %d with %d links, want the first pod's inode %d with 3 (cache, two run directories)",
			disks[1].Path, inodes[1], links[1], inodes[0])
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "disks", "*.img")); len(m) != 1 {
		t.Errorf("disk cache entries %q, want one", m)
	}

	proc := launcher.Process{Args: []string{"echo", "from the cached disk"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	spec := launcher.ContainerSpec(proc, "c")
	g := bootUnderPolicy(ctx, t, sbs[1], policy.Policy{Version: policy.Version, Agent: policy.AgentRules{Shutdown: true},
		Containers: []policy.Container{launcher.PolicyEntry("c", disks[1].Verity.RootHash, spec)}})
	if _, err := g.CreateContainer(ctx, "c", disks[1], spec, launcher.Stdio{}); err != nil {
		t.Fatalf("CreateContainer on the cached disk: %v", err)
	}
	var out strings.Builder
	logs := make(chan error, 1)
	go func() { logs <- g.Logs(ctx, "c", launcher.IO{Stdout: &out, Stderr: io.Discard}, true, 0) }()
	if err := g.Start(ctx, "c"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := g.Wait(ctx, launcher.ProcessRef{ContainerID: "c"}); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := <-logs; err != nil {
		t.Fatalf("Logs: %v", err)
	}
	if got := out.String(); got != "from the cached disk\n" {
		t.Errorf("container output %q, want %q", got, "from the cached disk\n")
	}
}
