package devmapper

import "strings"

// DeviceStatus is what DM_TABLE_STATUS reports about a device.
type DeviceStatus struct {
	Name      string
	Major     uint32
	Minor     uint32
	OpenCount int
	Active    bool // a live table is loaded
	Suspended bool
	ReadOnly  bool
	// Targets hold the status line of each target in Params.
	Targets []Target
}

func statusFrom(h header, targets []Target) DeviceStatus {
	return DeviceStatus{
		Name:      h.Name,
		Major:     uint32(((h.Dev >> 8) & 0xfff) | ((h.Dev >> 32) &^ 0xfff)),
		Minor:     uint32((h.Dev & 0xff) | ((h.Dev >> 12) &^ 0xff)),
		OpenCount: int(h.OpenCount),
		Active:    h.Flags&flagActivePresent != 0,
		Suspended: h.Flags&flagSuspend != 0,
		ReadOnly:  h.Flags&flagReadOnly != 0,
		Targets:   targets,
	}
}

// VerityCorrupted reports whether a verity target of the device has seen a
// block that failed verification (its status line starts with "C").
func (s DeviceStatus) VerityCorrupted() bool {
	for _, t := range s.Targets {
		if t.Type == "verity" && strings.HasPrefix(t.Params, "C") {
			return true
		}
	}
	return false
}
