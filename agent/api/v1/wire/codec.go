package wire

import (
	"errors"
	"fmt"
)

// The protobuf wire format (protobuf.dev/programming-guides/encoding) as the generated
// code uses it: varints, tags, length-delimited values and the skipping of unknown fields,
// each accepting and refusing what google.golang.org/protobuf/encoding/protowire and
// proto.Unmarshal accept and refuse.

// Wire types.
const (
	varintType     = 0
	fixed64Type    = 1
	bytesType      = 2
	startGroupType = 3
	endGroupType   = 4
	fixed32Type    = 5
)

const (
	// recursionLimit bounds the nesting of messages in a decoded message, and apart from
	// that, of groups in an unknown field: protobuf's default for both.
	recursionLimit = 10000
	// maxFieldNumber is the largest field number of a message's field.
	maxFieldNumber = 1<<29 - 1
)

// Decoding errors; the generated code names the message or field with them.
var (
	errMalformed   = errors.New("truncated or malformed wire data")
	errInvalidUTF8 = errors.New("invalid UTF-8")
	errTooDeep     = errors.New("messages nested too deeply")
)

func malformed(message string) error         { return fmt.Errorf("%s: %w", message, errMalformed) }
func invalidUTF8(field string) error         { return fmt.Errorf("%s: %w", field, errInvalidUTF8) }
func tooDeep(message string) error           { return fmt.Errorf("%s: %w", message, errTooDeep) }
func sizeBytes(n int) int                    { return sizeVarint(uint64(n)) + n }
func appendString(b []byte, s string) []byte { return append(appendVarint(b, uint64(len(s))), s...) }
func appendBytes(b, v []byte) []byte         { return append(appendVarint(b, uint64(len(v))), v...) }

// boolVarint is the varint that encodes v.
func boolVarint(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// sizeVarint is the length of v's varint encoding.
func sizeVarint(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// appendVarint appends v's varint encoding (7 bits a byte, least significant first).
func appendVarint(b []byte, v uint64) []byte {
	for ; v >= 0x80; v >>= 7 {
		b = append(b, byte(v)|0x80)
	}
	return append(b, byte(v))
}

// consumeVarint decodes the varint b starts with and its length, or a negative length
// for a truncated varint or one of more than 64 bits (a tenth byte above 1).
func consumeVarint(b []byte) (v uint64, n int) {
	for i := 0; i < 10; i++ {
		if i >= len(b) {
			return 0, -1
		}
		c := uint64(b[i])
		if i == 9 && c > 1 {
			return 0, -1
		}
		v |= (c & 0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1 // unreachable: the tenth byte is at most 1
}

// consumeBytes decodes the length-delimited value b starts with: the value and the
// length of its encoding, or a negative length if b is shorter than the value says.
func consumeBytes(b []byte) (v []byte, n int) {
	l, n := consumeVarint(b)
	if n < 0 || l > uint64(len(b)-n) {
		return nil, -1
	}
	return b[n : n+int(l)], n + int(l)
}

// consumeTag decodes the tag of a message's field: its number, wire type and length, or a
// negative length for a malformed tag, a number outside 1 to maxFieldNumber or an end
// group (a message is never decoded as a group here).
func consumeTag(b []byte) (num int32, typ byte, n int) {
	v, n := consumeVarint(b)
	if n < 0 || v>>3 < 1 || v>>3 > maxFieldNumber || v&7 == endGroupType {
		return 0, 0, -1
	}
	return int32(v >> 3), byte(v & 7), n
}

// consumeFieldValue is the length of the value of a field of number num and wire type typ
// that b starts with, or negative if it is malformed (as protowire.ConsumeFieldValue).
func consumeFieldValue(num int32, typ byte, b []byte) int {
	return consumeFieldValueDepth(num, typ, b, recursionLimit)
}

func consumeFieldValueDepth(num int32, typ byte, b []byte, depth int) int {
	switch typ {
	case varintType:
		_, n := consumeVarint(b)
		return n
	case fixed32Type:
		if len(b) < 4 {
			return -1
		}
		return 4
	case fixed64Type:
		if len(b) < 8 {
			return -1
		}
		return 8
	case bytesType:
		_, n := consumeBytes(b)
		return n
	case startGroupType:
		if depth < 0 {
			return -1
		}
		start := len(b)
		for {
			// Inside a group, protowire.ConsumeTag takes any number from 1 to 2^31-1.
			v, n := consumeVarint(b)
			if n < 0 || v>>3 < 1 || v>>3 > 1<<31-1 {
				return -1
			}
			b = b[n:]
			num2, typ2 := int32(v>>3), byte(v&7)
			if typ2 == endGroupType {
				if num2 != num {
					return -1
				}
				return start - len(b)
			}
			n = consumeFieldValueDepth(num2, typ2, b, depth-1)
			if n < 0 {
				return -1
			}
			b = b[n:]
		}
	}
	return -1 // an end group without its start, or a reserved wire type (6, 7)
}

// appendUnknown appends an unknown field to u, its tag encoded minimally, as protobuf
// keeps it.
func appendUnknown(u []byte, num int32, typ byte, value []byte) []byte {
	return append(appendVarint(u, uint64(num)<<3|uint64(typ)), value...)
}

// unknownFieldName names the first of the unknown fields raw of the message at path.
func unknownFieldName(path string, raw []byte) string {
	where := "field"
	if path != "" {
		where = path + " field"
	}
	if v, n := consumeVarint(raw); n > 0 {
		return fmt.Sprintf("%s %d", where, v>>3)
	}
	return where + " (undecodable)"
}

// subPath is the path of field name of the message at path.
func subPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
