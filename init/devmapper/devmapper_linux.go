package devmapper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ControlPath is the device-mapper control node devtmpfs creates.
const ControlPath = "/dev/mapper/control"

// MapperDir holds the device nodes this package creates.
const MapperDir = "/dev/mapper"

// cmdName names a device-mapper ioctl in errors.
func cmdName(cmd uint) string {
	switch cmd {
	case unix.DM_DEV_CREATE:
		return "DM_DEV_CREATE"
	case unix.DM_DEV_REMOVE:
		return "DM_DEV_REMOVE"
	case unix.DM_DEV_SUSPEND:
		return "DM_DEV_SUSPEND"
	case unix.DM_DEV_STATUS:
		return "DM_DEV_STATUS"
	case unix.DM_TABLE_LOAD:
		return "DM_TABLE_LOAD"
	case unix.DM_TABLE_STATUS:
		return "DM_TABLE_STATUS"
	}
	return fmt.Sprintf("ioctl %#x", cmd)
}

// control is an open /dev/mapper/control.
type control struct{ f *os.File }

func openControl() (*control, error) {
	f, err := os.OpenFile(ControlPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoDeviceMapper
	}
	if err != nil {
		return nil, fmt.Errorf("open device-mapper control: %w", err)
	}
	return &control{f: f}, nil
}

func (c *control) Close() error { return c.f.Close() }

// do runs cmd for device name and returns the kernel's reply buffer. It
// grows the buffer while the kernel reports it full.
func (c *control) do(cmd uint, h header, payload []byte) ([]byte, header, error) {
	size := 16 << 10
	for {
		buf := encode(h, payload, size)
		err := ioctl(c.f.Fd(), cmd, buf)
		if err != nil {
			return nil, header{}, fmt.Errorf("%s %q: %w", cmdName(cmd), h.Name, err)
		}
		rh, err := decodeHeader(buf)
		if err != nil {
			return nil, header{}, fmt.Errorf("%s %q: %w", cmdName(cmd), h.Name, err)
		}
		if rh.Flags&flagBufferFull == 0 {
			return buf, rh, nil
		}
		if size >= 16<<20 {
			return nil, header{}, fmt.Errorf("%s %q: %w: reply larger than %d bytes", cmdName(cmd), h.Name, ErrShortReply, size)
		}
		size *= 4
	}
}

// Create makes a device-mapper device called name with the given table,
// activates it and creates /dev/mapper/<name>. On any failure it removes
// what it created. readOnly marks the device read-only.
func Create(ctx context.Context, name string, readOnly bool, targets ...Target) (devPath string, err error) {
	if err := validName(name); err != nil {
		return "", err
	}
	if len(targets) == 0 {
		return "", fmt.Errorf("%w: device %q has no targets", ErrInvalidTarget, name)
	}
	table, err := encodeTable(targets)
	if err != nil {
		return "", err
	}
	c, err := openControl()
	if err != nil {
		return "", err
	}
	defer c.Close()

	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	_, created, err := c.do(unix.DM_DEV_CREATE, header{Name: name}, nil)
	if err != nil {
		return "", fmt.Errorf("create device %q: %w", name, err)
	}
	undo = append(undo, func() { _, _, _ = c.do(unix.DM_DEV_REMOVE, header{Name: name}, nil) })
	if err := ctx.Err(); err != nil {
		return "", err
	}

	flags := uint32(0)
	if readOnly {
		flags |= flagReadOnly
	}
	if _, _, err := c.do(unix.DM_TABLE_LOAD, header{Name: name, Flags: flags, TargetCount: uint32(len(targets))}, table); err != nil {
		return "", fmt.Errorf("load table of %q (%s): %w", name, targets[0], err)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	// DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table goes live.
	if _, _, err := c.do(unix.DM_DEV_SUSPEND, header{Name: name}, nil); err != nil {
		return "", fmt.Errorf("activate device %q: %w", name, err)
	}

	devPath = filepath.Join(MapperDir, name)
	if err := makeNode(devPath, created.Dev); err != nil {
		return "", err
	}
	undo = append(undo, func() { _ = os.Remove(devPath) })
	return devPath, nil
}

// makeNode creates the block device node for dev (encoded as the kernel's
// huge_encode_dev, which unix.Major/Minor decode).
func makeNode(path string, dev uint64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create device node %s: %w", path, err)
	}
	rdev := unix.Mkdev(unix.Major(dev), unix.Minor(dev))
	_ = os.Remove(path)
	if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(rdev)); err != nil {
		return fmt.Errorf("create device node %s (%d:%d): %w", path, unix.Major(dev), unix.Minor(dev), err)
	}
	return nil
}

// CreateVerity creates a read-only dm-verity device called name and returns
// its device node. Reads of blocks whose hashes do not chain up to
// v.RootHash fail (or restart or panic, see OnCorruption).
func CreateVerity(ctx context.Context, name string, v VerityTarget) (devPath string, err error) {
	t, err := v.Target()
	if err != nil {
		return "", fmt.Errorf("verity device %q: %w", name, err)
	}
	return Create(ctx, name, true, t)
}

// Remove deletes the device called name and its /dev/mapper node. It
// retries while the device is busy (EBUSY) until ctx is done.
func Remove(ctx context.Context, name string) error {
	if err := validName(name); err != nil {
		return err
	}
	c, err := openControl()
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		_, _, err = c.do(unix.DM_DEV_REMOVE, header{Name: name}, nil)
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove device %q: %w (%w)", name, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("remove device %q: %w", name, err)
	}
	if err := os.Remove(filepath.Join(MapperDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove device node of %q: %w", name, err)
	}
	return nil
}

// Status reports the state of the device called name and the status line
// of each target of its live table (for verity: "V" verified so far, "C"
// corruption detected).
func Status(name string) (DeviceStatus, error) {
	if err := validName(name); err != nil {
		return DeviceStatus{}, err
	}
	c, err := openControl()
	if err != nil {
		return DeviceStatus{}, err
	}
	defer c.Close()
	buf, h, err := c.do(unix.DM_TABLE_STATUS, header{Name: name}, nil)
	if err != nil {
		return DeviceStatus{}, fmt.Errorf("status of device %q: %w", name, err)
	}
	targets, err := decodeTargets(buf, h)
	if err != nil {
		return DeviceStatus{}, fmt.Errorf("status of device %q: %w", name, err)
	}
	return statusFrom(h, targets), nil
}
