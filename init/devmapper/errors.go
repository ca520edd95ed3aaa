package devmapper

import "errors"

var (
	// ErrNoDeviceMapper means /dev/mapper/control is missing: the kernel has
	// no device-mapper or devtmpfs is not mounted on /dev.
	ErrNoDeviceMapper = errors.New("device-mapper control device /dev/mapper/control not found (kernel needs CONFIG_BLK_DEV_DM and devtmpfs on /dev)")
	// ErrInvalidTarget means a target description cannot be turned into a table.
	ErrInvalidTarget = errors.New("invalid device-mapper target")
	// ErrInvalidName means a device name is empty, too long or contains '/'.
	ErrInvalidName = errors.New("invalid device-mapper device name")
	// ErrShortReply means the kernel's reply did not fit the layout we expect.
	ErrShortReply = errors.New("short or malformed device-mapper reply")
)
