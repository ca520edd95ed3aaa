//go:build linux

package devmapper

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestLayoutMatchesKernelHeader checks our hand-written offsets against the
// struct layouts golang.org/x/sys/unix generates from linux/dm-ioctl.h.
func TestLayoutMatchesKernelHeader(t *testing.T) {
	var h unix.DmIoctl
	var s unix.DmTargetSpec
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof dm_ioctl", headerSize, unix.SizeofDmIoctl},
		{"sizeof dm_target_spec", targetSpecSize, unix.SizeofDmTargetSpec},
		{"version", offVersion, unsafe.Offsetof(h.Version)},
		{"data_size", offDataSize, unsafe.Offsetof(h.Data_size)},
		{"data_start", offDataStart, unsafe.Offsetof(h.Data_start)},
		{"target_count", offTargetCount, unsafe.Offsetof(h.Target_count)},
		{"open_count", offOpenCount, unsafe.Offsetof(h.Open_count)},
		{"flags", offFlags, unsafe.Offsetof(h.Flags)},
		{"event_nr", offEventNr, unsafe.Offsetof(h.Event_nr)},
		{"dev", offDev, unsafe.Offsetof(h.Dev)},
		{"name", offName, unsafe.Offsetof(h.Name)},
		{"uuid", offUUID, unsafe.Offsetof(h.Uuid)},
		{"name length", nameLen, unix.DM_NAME_LEN},
		{"uuid length", uuidLen, unix.DM_UUID_LEN},
		{"spec next", 20, unsafe.Offsetof(s.Next)},
		{"spec type", 24, unsafe.Offsetof(s.Target_type)},
		{"type length", maxTypeName, unix.DM_MAX_TYPE_NAME},
		{"flag read-only", flagReadOnly, unix.DM_READONLY_FLAG},
		{"flag suspend", flagSuspend, unix.DM_SUSPEND_FLAG},
		{"flag active", flagActivePresent, unix.DM_ACTIVE_PRESENT_FLAG},
		{"flag buffer full", flagBufferFull, unix.DM_BUFFER_FULL_FLAG},
		{"version major", versionMajor, unix.DM_VERSION_MAJOR},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}
