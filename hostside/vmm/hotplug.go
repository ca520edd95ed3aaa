package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
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
	if err := qmpRun(ctx, filepath.Join(dir, QMPSocket), cmds); err != nil {
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

type qmpCommand struct {
	Execute   string         `json:"execute"`
	Arguments map[string]any `json:"arguments,omitempty"`
}

// qmpRun runs commands in one QMP session, in order, stopping at the first error.
func qmpRun(ctx context.Context, path string, cmds []qmpCommand) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("QMP socket %s: %w", path, ErrNotRunning)
		}
		return fmt.Errorf("dial QMP socket %s: %w", path, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	dec := json.NewDecoder(conn)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		return fmt.Errorf("QMP %s: no greeting: %v", path, err)
	}
	enc := json.NewEncoder(conn)
	for _, c := range append([]qmpCommand{{Execute: "qmp_capabilities"}}, cmds...) {
		if err := enc.Encode(c); err != nil {
			return fmt.Errorf("QMP %s: send %s: %w", path, c.Execute, err)
		}
		for {
			var reply struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Class string `json:"class"`
					Desc  string `json:"desc"`
				} `json:"error"`
				Event string `json:"event"`
			}
			if err := dec.Decode(&reply); err != nil {
				return fmt.Errorf("QMP %s: read reply to %s: %w", path, c.Execute, err)
			}
			if reply.Event != "" {
				continue
			}
			if reply.Error != nil {
				return fmt.Errorf("QMP %s: %s: %s: %w", c.Execute, reply.Error.Class, reply.Error.Desc, ErrAPI)
			}
			break
		}
	}
	return nil
}
