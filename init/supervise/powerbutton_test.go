package supervise

import (
	"encoding/binary"
	"testing"
)

// event builds one struct input_event.
func event(typ, code uint16, value int32) []byte {
	b := make([]byte, inputEventSize)
	binary.NativeEndian.PutUint64(b[0:], 1700000000) // tv_sec
	binary.NativeEndian.PutUint16(b[16:], typ)
	binary.NativeEndian.PutUint16(b[18:], code)
	binary.NativeEndian.PutUint32(b[20:], uint32(value))
	return b
}

func TestIsPowerPress(t *testing.T) {
	tests := []struct {
		name string
		ev   []byte
		want bool
	}{
		{"power press", event(evKey, keyPower, 1), true},
		{"power release", event(evKey, keyPower, 0), false},
		{"power autorepeat", event(evKey, keyPower, 2), false},
		{"other key", event(evKey, 30, 1), false},
		{"sync event", event(0, 0, 0), false},
		{"power code, not a key event", event(0x04, keyPower, 1), false},
		{"short", event(evKey, keyPower, 1)[:16], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isPowerPress(tc.ev); got != tc.want {
				t.Errorf("isPowerPress(%x) = %v, want %v", tc.ev, got, tc.want)
			}
		})
	}
}
