package supervise

import "encoding/binary"

// Linux input event constants (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
	// inputEventSize is sizeof(struct input_event) on 64-bit Linux:
	// struct timeval (16 bytes), type u16, code u16, value s32.
	inputEventSize = 24
)

// isPowerPress reports whether ev, one struct input_event, is a press of
// KEY_POWER (value 1; 0 is release, 2 autorepeat).
func isPowerPress(ev []byte) bool {
	if len(ev) != inputEventSize {
		return false
	}
	typ := binary.NativeEndian.Uint16(ev[16:])
	code := binary.NativeEndian.Uint16(ev[18:])
	value := int32(binary.NativeEndian.Uint32(ev[20:]))
	return typ == evKey && code == keyPower && value == 1
}
