package vmm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// AddDisk hot-adds d to the running VM as a read-only (if d.ReadOnly) virtio-blk disk that
// the guest finds by d.Serial: QEMU through QMP (blockdev-add, then device_add of a
// virtio-blk-pci device), Cloud Hypervisor through vm.add-disk. The VM is told apart by
// the control socket in its run directory.
//
// On QEMU's pc machine the guest sees the device through ACPI PCI hotplug. A q35 machine
// (an SEV-SNP launch) hot-plugs into the first free PCIe root port of those it was started
// with (HotplugPorts), as a modern-only device behind the DMA API like its other virtio
// devices; QEMU's own device tree, not the guest, tells which ports are taken.
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
	if err := qmpAddDisk(ctx, filepath.Join(dir, QMPSocket), d); err != nil {
		return fmt.Errorf("add disk %s: %w", d.Path, err)
	}
	return nil
}

func qmpAddDisk(ctx context.Context, sock string, d Disk) error {
	s, err := qmpDial(ctx, sock, 10*time.Second)
	if err != nil {
		return err
	}
	defer s.close()
	port, err := freeRootPort(s)
	if err != nil {
		return err
	}
	node := "hot-" + d.Serial
	file := map[string]any{"driver": "file", "filename": d.Path, "read-only": d.ReadOnly}
	dev := map[string]any{"driver": "virtio-blk-pci", "drive": node, "id": "dev-" + d.Serial, "serial": d.Serial}
	if port != "" {
		dev["bus"], dev["disable-legacy"], dev["iommu_platform"] = port, "on", true
	}
	for _, c := range []qmpCommand{
		{"blockdev-add", map[string]any{"driver": "raw", "node-name": node, "read-only": d.ReadOnly, "file": file}},
		{"device_add", dev},
	} {
		if _, err := s.run(c); err != nil {
			return err
		}
	}
	return nil
}

// HotplugPorts is the number of PCIe root ports a q35 (SEV-SNP) QEMU launch gets for
// hot-added disks, named hotplugPortID(0..HotplugPorts-1): a PCIe root port holds one
// device, so a pod VM takes this many containers' disks.
const HotplugPorts = 16

func hotplugPortID(i int) string { return fmt.Sprintf("hp%d", i) }

// freeRootPort returns the first of the VM's hot-plug root ports that holds no device, ""
// when the VM has none (the pc machine hot-plugs onto its root bus), or an error when all
// are taken.
func freeRootPort(s *qmpSession) (string, error) {
	raw, err := s.run(qmpCommand{"qom-list", map[string]any{"path": "/machine/peripheral"}})
	if err != nil {
		return "", err
	}
	var children []struct{ Name, Type string }
	if err := json.Unmarshal(raw, &children); err != nil {
		return "", fmt.Errorf("QMP qom-list /machine/peripheral: %w", err)
	}
	ports := map[string]bool{} // id -> taken
	var devices []string
	for _, c := range children {
		switch {
		case c.Type == "child<pcie-root-port>":
			ports[c.Name] = false
		case strings.HasPrefix(c.Type, "child<"):
			devices = append(devices, c.Name)
		}
	}
	if len(ports) == 0 {
		return "", nil
	}
	for _, id := range devices {
		raw, err := s.run(qmpCommand{"qom-get", map[string]any{"path": "/machine/peripheral/" + id, "property": "parent_bus"}})
		if err != nil {
			return "", err
		}
		var bus string
		if err := json.Unmarshal(raw, &bus); err != nil {
			return "", fmt.Errorf("QMP qom-get %s parent_bus: %w", id, err)
		}
		// A root port's bus is /machine/peripheral/<port>/<port>.
		if p := path.Base(path.Dir(bus)); strings.HasPrefix(bus, "/machine/peripheral/") {
			if _, ok := ports[p]; ok {
				ports[p] = true
			}
		}
	}
	for i := 0; i < len(ports); i++ {
		if taken, ok := ports[hotplugPortID(i)]; ok && !taken {
			return hotplugPortID(i), nil
		}
	}
	return "", fmt.Errorf("every one of the VM's %d PCIe root ports holds a disk: %w", len(ports), ErrNoHotplugPort)
}

// AddDisk is vm.add-disk: the disk is hot-plugged into a running VM (cold-added to one not
// yet booted). Cloud Hypervisor's device info in the answer is not needed: the guest finds
// the disk by its serial.
func (c *CHClient) AddDisk(ctx context.Context, d DiskConfig) error {
	return c.do(ctx, http.MethodPut, "vm.add-disk", d, nil)
}
