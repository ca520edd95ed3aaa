package container

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"confguest/init/devmapper"
	"confguest/rootfs/verity"
)

// DefaultScratchBytes sizes the tmpfs upper layer of a container rootfs.
const DefaultScratchBytes = 256 << 20

// VerityDevices opens and closes dm-verity devices. The guest uses
// device-mapper (DeviceMapper); tests on a host without device-mapper
// inject their own.
type VerityDevices interface {
	Open(ctx context.Context, name string, t devmapper.VerityTarget) (devPath string, err error)
	Close(ctx context.Context, name string) error
}

// DeviceMapper opens verity devices with the kernel's device-mapper.
type DeviceMapper struct{}

// Open creates /dev/mapper/<name>.
func (DeviceMapper) Open(ctx context.Context, name string, t devmapper.VerityTarget) (string, error) {
	return devmapper.CreateVerity(ctx, name, t)
}

// Close removes the device.
func (DeviceMapper) Close(ctx context.Context, name string) error {
	return devmapper.Remove(ctx, name)
}

// BlockSource is a read-only image on a block device, checked by dm-verity.
type BlockSource struct {
	Serial string // virtio serial; or
	Path   string // device path
	FSType string // default erofs
	// Verity are the image's verity parameters (the hash tree is appended to the data).
	Verity verity.Params
}

// RootfsSource is where a container's root filesystem comes from: a block
// image or a directory on the guest root (exactly one).
type RootfsSource struct {
	Block          *BlockSource
	GuestDirectory string
	ScratchBytes   uint64
}

func (m *Manager) checkRootfs(r RootfsSource) error {
	switch {
	case r.Block != nil && r.GuestDirectory != "":
		return fieldErr("rootfs", "set either block or guest_directory, not both")
	case r.Block != nil:
		b := r.Block
		if (b.Serial == "") == (b.Path == "") {
			return fieldErr("rootfs.block", "set exactly one of serial and path")
		}
		if b.Path != "" && (!strings.HasPrefix(b.Path, "/dev/") || filepath.Clean(b.Path) != b.Path) {
			return fieldErr("rootfs.block.path", "%q is not a clean /dev/ path", b.Path)
		}
		if b.Serial != "" && !idPattern().MatchString(b.Serial) {
			return fieldErr("rootfs.block.serial", "%q is not a valid disk serial", b.Serial)
		}
		if h, err := hex.DecodeString(b.Verity.RootHash); err != nil || len(h) < 20 {
			return fieldErr("rootfs.block.verity.root_hash", "%q is not a hex digest", b.Verity.RootHash)
		}
		if _, err := hex.DecodeString(b.Verity.Salt); err != nil {
			return fieldErr("rootfs.block.verity.salt", "%q is not hex", b.Verity.Salt)
		}
		if b.Verity.DataBlocks == 0 {
			return fieldErr("rootfs.block.verity.data_blocks", "must be positive")
		}
		if b.FSType != "" && b.FSType != "erofs" {
			return fieldErr("rootfs.block.fs_type", "%q not supported: layers are erofs images", b.FSType)
		}
	case r.GuestDirectory != "":
		d := r.GuestDirectory
		if !filepath.IsAbs(d) || filepath.Clean(d) != d {
			return fieldErr("rootfs.guest_directory", "%q is not a clean absolute path", d)
		}
		if !under(d, m.cfg.ImageDirs) {
			return fieldErr("rootfs.guest_directory", "%q is not inside the guest image directories %q", d, m.cfg.ImageDirs)
		}
	default:
		return fieldErr("rootfs", "missing: set block or guest_directory")
	}
	return nil
}

func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// mountRootfs assembles dir/rootfs = overlay(lower: image, upper: tmpfs)
// and pushes every undo step onto undo.
func (m *Manager) mountRootfs(ctx context.Context, dir string, r RootfsSource, undo *cleanups) (string, error) {
	lower := r.GuestDirectory
	if r.Block != nil {
		var err error
		if lower, err = m.mountBlock(ctx, r.Block, undo); err != nil {
			return "", err
		}
	} else if st, err := os.Stat(lower); err != nil || !st.IsDir() {
		return "", fieldErr("rootfs.guest_directory", "%q is not a directory in the guest", lower)
	}
	scratch := filepath.Join(dir, "scratch")
	size := r.ScratchBytes
	if size == 0 {
		size = DefaultScratchBytes
	}
	if err := mountAt("tmpfs", scratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size), undo); err != nil {
		return "", err
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(scratch, d), 0o755); err != nil {
			return "", fmt.Errorf("create overlay %s dir: %w", d, err)
		}
	}
	rootfs := filepath.Join(dir, "rootfs")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(scratch, "upper"), filepath.Join(scratch, "work"))
	if err := mountAt("overlay", rootfs, "overlay", 0, opts, undo); err != nil {
		return "", err
	}
	return rootfs, nil
}

// mountBlock finds the disk of b and returns the read-only mount of its
// image (a shared layer, see acquireLayer).
func (m *Manager) mountBlock(ctx context.Context, b *BlockSource, undo *cleanups) (string, error) {
	dev := b.Path
	if b.Serial != "" {
		var err error
		if dev, err = findDiskBySerial(m.cfg.SysBlock, b.Serial); err != nil {
			return "", err
		}
	}
	if m.cfg.Verity == nil {
		return "", fmt.Errorf("open %s through dm-verity: %w", dev, ErrNoDeviceMapper)
	}
	fstype := b.FSType
	if fstype == "" {
		fstype = "erofs"
	}
	return m.acquireLayer(ctx, dev, fstype, b, undo)
}

// mountAt creates target, mounts onto it and pushes the unmount.
func mountAt(source, target, fstype string, flags uintptr, data string, undo *cleanups) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create mount point %s: %w", target, err)
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s %s on %s: %w", fstype, source, target, err)
	}
	undo.push(func() error {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
		return nil
	})
	return nil
}

// findDiskBySerial finds the block device whose virtio serial is serial,
// reading <sysBlock>/<dev>/serial (there is no udev in the guest).
func findDiskBySerial(sysBlock, serial string) (string, error) {
	if sysBlock == "" {
		sysBlock = "/sys/block"
	}
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", fmt.Errorf("list block devices: %w", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "serial"))
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == serial {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", fmt.Errorf("rootfs.block.serial: no disk with serial %q in %s: %w (attach the layer disk with that serial)", serial, sysBlock, ErrNotFound)
}
