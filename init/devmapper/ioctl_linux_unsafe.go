//go:build linux

package devmapper

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues one device-mapper command with buf (header + payload) as its
// in/out argument. buf must be at least headerSize bytes.
func ioctl(fd uintptr, cmd uint, buf []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(cmd), uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return errno
	}
	return nil
}
