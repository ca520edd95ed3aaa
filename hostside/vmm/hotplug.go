package vmm

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// AddDisk hot-adds d to the running VM as a read-only (if d.ReadOnly) virtio-blk disk that
// the guest finds by d.Serial: QEMU through QMP (blockdev-add, then device_add of a
// virtio-blk-pci device; the guest sees it through ACPI PCI hotplug), Cloud Hypervisor
// through vm.add-disk. The VM is told apart by the control socket in its run directory.
func AddDisk(ctx context.Context, vm VM, d Disk) error {
	if d.Serial == "" || len(d.Serial) > 20 {
		return fmt.Errorf("add disk %s: serial %q: want 1 to 20 bytes", d.Path, d.Serial)
	}
	dir := filepath.Dir(vm.VsockPath())
	if _, err := os.Stat(filepath.Join(dir, APISocket)); err == nil {
		err := NewCHClient(filepath.Join(dir, APISocket)).AddDisk(ctx, DiskConfig{Path: d.Path, Readonly: d.ReadOnly, Serial: d.Serial})
		if err != nil {
			return fmt.Errorf("add disk %s: %w", d.Path, err)
		}
		return nil
	}
	node := "hot-" + d.Serial
	file := map[string]any{"driver": "file", "filename": d.Path, "read-only": d.ReadOnly}
	cmds := []qmpCommand{
		{"blockdev-add", map[string]any{"driver": "raw", "node-name": node, "read-only": d.ReadOnly, "file": file}},
		{"device_add", map[string]any{"driver": "virtio-blk-pci", "drive": node, "id": "dev-" + d.Serial, "serial": d.Serial}},
	}
	if err := qmpRun(ctx, filepath.Join(dir, QMPSocket), 10*time.Second, cmds); err != nil {
		return fmt.Errorf("add disk %s: %w", d.Path, err)
	}
	return nil
}

// AddDisk is vm.add-disk: the disk is hot-plugged into a running VM (cold-added to one not
// yet booted). Cloud Hypervisor's device info in the answer is not needed: the guest finds
// the disk by its serial.
func (c *CHClient) AddDisk(ctx context.Context, d DiskConfig) error {
	return c.do(ctx, http.MethodPut, "vm.add-disk", d, nil)
}
