package qemutests

// Disk hot-add on QEMU's q35 machine, the machine of an SEV-SNP launch: q35's root bus
// takes no hot-plugged devices, so such a launch gets PCIe root ports (vmm.HotplugPortArgs)
// and vmm.AddDisk plugs each disk into a free one. SEV-SNP itself cannot run here; this
// boots the real image on q35 under TCG with the same ports and hot-adds through QMP as a
// pod's containers would.

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"confguest/hostside/vmm"
)

// qmpDirVM is a VM as vmm.AddDisk sees it: its run directory holds the QMP socket.
type qmpDirVM struct {
	vmm.VM
	dir string
}

func (v qmpDirVM) VsockPath() string { return filepath.Join(v.dir, vmm.VsockSocket) }

func TestHotplugQ35RootPorts(t *testing.T) {
	img := needImage(t)
	opts := img.Options()
	opts.Memory = "256M"
	opts.Extra = append([]string{"-machine", "q35"}, vmm.HotplugPortArgs()...)
	g := startGuest(t, opts)
	if filepath.Base(g.qmpPath) != vmm.QMPSocket {
		t.Fatalf("the harness's QMP socket %s is not named %s", g.qmpPath, vmm.QMPSocket)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := g.WaitFor(ctx, markerReady); err != nil {
		t.Fatalf("q35 guest not ready: %v", err)
	}
	vm := qmpDirVM{dir: filepath.Dir(g.qmpPath)}
	// Two disks (the root image again, read-only, will do: the guest only has to see them).
	// The guest's PCIe hotplug driver probes each as it arrives, vdb then vdc; a second disk
	// put into an occupied root port would never show up, as a root port has one slot.
	for _, name := range []string{"vdb", "vdc"} {
		serial := "hot" + name
		if err := vmm.AddDisk(ctx, vm, vmm.Disk{Path: img.RootFS, Serial: serial, ReadOnly: true}); err != nil {
			t.Fatalf("AddDisk %s: %v", serial, err)
		}
		if _, err := g.WaitFor(ctx, "["+name+"]"); err != nil {
			t.Fatalf("the guest did not probe the hot-added disk %s as %s: %v", serial, name, err)
		}
	}
	if strings.Contains(g.Console(), "confguest-init: fatal") {
		t.Errorf("the guest failed after the hot-add:\n%s", fatalLine(g.Console()))
	}
}
