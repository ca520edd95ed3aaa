package qemutests

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
	"confguest/hostside/vmm"
)

// TestLauncherBootsToAgent boots the real image through the host-side launcher (QEMU, TCG,
// vhost-device-vsock), reaches the agent over hybrid vsock, and tears everything down.
func TestLauncherBootsToAgent(t *testing.T) {
	img := needImage(t)
	vhost := vhostDeviceVsock(t)
	base, err := os.MkdirTemp("", "cgl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	timings := launcher.NewTimings()
	sb, err := launcher.New(ctx, launcher.Options{
		ImageDir: img.Dir, Accel: vmm.AccelTCG, MemoryMiB: 256, RunBase: base,
		QEMU: []vmm.QEMUOption{vmm.WithVhostDeviceVsock(vhost)}, Timings: timings,
	})
	if err != nil {
		t.Fatalf("launcher.New: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			sb.Close(context.Background())
		}
	}()
	g, err := sb.Boot(ctx, nil)
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	v, err := g.Agent().Version(ctx, &agentv1.VersionRequest{})
	if status.Code(err) == codes.Unimplemented {
		t.Logf("the agent does not implement Version yet; the connection alone shows it is up")
	} else if err != nil || v.GetTee() != "none" {
		t.Errorf("agent Version = %v, %v; want tee none", v, err)
	} else if want := imageAgentDigest(t, img.RootFS); v.GetBuildDigest() != want {
		t.Errorf("agent Version build digest = %s, want %s, the SHA-256 of /sbin/agent in rootfs.img", v.GetBuildDigest(), want)
	}
	closed = true
	if err := sb.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, p := range timings.Phases() {
		t.Logf("%s: %v", p.Name, p.Duration)
	}
	if procs := procsMentioning(base); len(procs) != 0 {
		t.Errorf("processes left after Close: %q", procs)
	}
	if ents, _ := os.ReadDir(base); len(ents) != 0 {
		t.Errorf("%d entries left in the run base after Close", len(ents))
	}
}

// newSandbox returns a launcher sandbox for img: QEMU under TCG with memMiB of memory and
// vhost-device-vsock, its run directory in a temporary folder. The sandbox is closed and the
// folder removed when the test ends.
func newSandbox(ctx context.Context, tb testing.TB, img Image, memMiB int) *launcher.Sandbox {
	tb.Helper()
	vhost := vhostDeviceVsock(tb)
	base, err := os.MkdirTemp("", "cg")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(base) })
	sb, err := launcher.New(ctx, launcher.Options{
		ImageDir: img.Dir, Accel: vmm.AccelTCG, MemoryMiB: memMiB, RunBase: base,
		QEMU: []vmm.QEMUOption{vmm.WithVhostDeviceVsock(vhost)},
	})
	if err != nil {
		tb.Fatalf("launcher.New: %v", err)
	}
	tb.Cleanup(func() { sb.Close(context.Background()) })
	return sb
}

// busyboxDisk builds sb's container disk of a busybox root (busyboxRoot) with apps linked
// to busybox besides its usual ones.
func busyboxDisk(ctx context.Context, t *testing.T, sb *launcher.Sandbox, apps ...string) launcher.Disk {
	t.Helper()
	root := busyboxRoot(t)
	for _, app := range apps {
		os.Symlink("busybox", filepath.Join(root, "bin", app))
	}
	return dirDisk(ctx, t, sb, root)
}

// dirDisk builds sb's container disk of the directory root.
func dirDisk(ctx context.Context, t *testing.T, sb *launcher.Sandbox, root string) launcher.Disk {
	t.Helper()
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		missing(t, "mkfs.erofs not found: install erofs-utils (build/setup.sh)")
	}
	disk, err := sb.BuildDisk(ctx, image.Source{Kind: image.Dir, Ref: root})
	if err != nil {
		t.Fatalf("BuildDisk: %v", err)
	}
	return disk
}

// bootUnderPolicy boots sb with p as the guest's policy (its SHA-256 is HOST_DATA),
// installed, and returns the running guest.
func bootUnderPolicy(ctx context.Context, tb testing.TB, sb *launcher.Sandbox, p policy.Policy) *launcher.Guest {
	tb.Helper()
	doc, err := json.Marshal(p)
	if err != nil {
		tb.Fatal(err)
	}
	g, err := sb.Boot(ctx, doc)
	if err != nil {
		tb.Fatalf("Boot: %v", err)
	}
	return g
}

// imageAgentDigest is the SHA-256 of /sbin/agent in the erofs root image, extracted with
// fsck.erofs.
func imageAgentDigest(t *testing.T, rootfs string) string {
	t.Helper()
	fsck, err := exec.LookPath("fsck.erofs")
	if err != nil {
		missing(t, "fsck.erofs not found: install erofs-utils (build/setup.sh)")
	}
	dir := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command(fsck, "--extract="+dir, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs --extract %s: %v\n%s", rootfs, err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "sbin", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}
