// Package pbwire is the protobuf wire format (protobuf.dev/programming-guides/encoding) as
// the agent reads and writes it: varints, tags, length-delimited values and the skipping of
// unknown fields, each accepting and refusing what
// google.golang.org/protobuf/encoding/protowire and proto.Unmarshal accept and refuse. The
// agent's generated messages (agent/api/v1/wire) and its ttrpc server's envelope
// (agent/ttrpcserver) both use it; it imports nothing.
//
// The Consume functions return a negative length for malformed input.
package pbwire

// Wire types.
const (
	VarintType     = 0
	Fixed64Type    = 1
	BytesType      = 2
	StartGroupType = 3
	EndGroupType   = 4
	Fixed32Type    = 5
)

const (
	// RecursionLimit bounds the nesting of messages in a decoded message, and apart from
	// that, of groups in an unknown field: protobuf's default for both.
	RecursionLimit = 10000
	// MaxFieldNumber is the largest field number of a message's field.
	MaxFieldNumber = 1<<29 - 1
)

// SizeVarint is the length of v's varint encoding.
func SizeVarint(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// SizeBytes is the length of a length-delimited value of n bytes.
func SizeBytes(n int) int { return SizeVarint(uint64(n)) + n }

// AppendVarint appends v's varint encoding (7 bits a byte, least significant first).
func AppendVarint(b []byte, v uint64) []byte {
	for ; v >= 0x80; v >>= 7 {
		b = append(b, byte(v)|0x80)
	}
	return append(b, byte(v))
}

// AppendTag appends the tag of field num with wire type typ.
func AppendTag(b []byte, num int32, typ byte) []byte {
	return AppendVarint(b, uint64(num)<<3|uint64(typ))
}

// AppendString appends s as a length-delimited value.
func AppendString(b []byte, s string) []byte { return append(AppendVarint(b, uint64(len(s))), s...) }

// AppendBytes appends v as a length-delimited value.
func AppendBytes(b, v []byte) []byte { return append(AppendVarint(b, uint64(len(v))), v...) }

// EncodeBool is the varint that encodes v.
func EncodeBool(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// ConsumeVarint decodes the varint b starts with and its length, or a negative length
// for a truncated varint or one of more than 64 bits (a tenth byte above 1).
func ConsumeVarint(b []byte) (v uint64, n int) {
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

// ConsumeBytes decodes the length-delimited value b starts with: the value and the
// length of its encoding, or a negative length if b is shorter than the value says.
func ConsumeBytes(b []byte) (v []byte, n int) {
	l, n := ConsumeVarint(b)
	if n < 0 || l > uint64(len(b)-n) {
		return nil, -1
	}
	return b[n : n+int(l)], n + int(l)
}

// ConsumeTag decodes the tag of a message's field: its number, wire type and length, or a
// negative length for a malformed tag, a number outside 1 to MaxFieldNumber or an end
// group (a message is never decoded as a group here).
func ConsumeTag(b []byte) (num int32, typ byte, n int) {
	v, n := ConsumeVarint(b)
	if n < 0 || v>>3 < 1 || v>>3 > MaxFieldNumber || v&7 == EndGroupType {
		return 0, 0, -1
	}
	return int32(v >> 3), byte(v & 7), n
}

// ConsumeFieldValue is the length of the value of a field of number num and wire type typ
// that b starts with, or negative if it is malformed (as protowire.ConsumeFieldValue):
// truncated, a reserved wire type, an end group without its start, or groups nested
// deeper than RecursionLimit.
func ConsumeFieldValue(num int32, typ byte, b []byte) int {
	return consumeFieldValue(num, typ, b, RecursionLimit)
}

func consumeFieldValue(num int32, typ byte, b []byte, depth int) int {
	switch typ {
	case VarintType:
		_, n := ConsumeVarint(b)
		return n
	case Fixed32Type:
		if len(b) < 4 {
			return -1
		}
		return 4
	case Fixed64Type:
		if len(b) < 8 {
			return -1
		}
		return 8
	case BytesType:
		_, n := ConsumeBytes(b)
		return n
	case StartGroupType:
		if depth < 0 {
			return -1
		}
		start := len(b)
		for {
			// Inside a group, protowire.ConsumeTag takes any number from 1 to 2^31-1.
			v, n := ConsumeVarint(b)
			if n < 0 || v>>3 < 1 || v>>3 > 1<<31-1 {
				return -1
			}
			b = b[n:]
			num2, typ2 := int32(v>>3), byte(v&7)
			if typ2 == EndGroupType {
				if num2 != num {
					return -1
				}
				return start - len(b)
			}
			n = consumeFieldValue(num2, typ2, b, depth-1)
			if n < 0 {
				return -1
			}
			b = b[n:]
		}
	}
	return -1 // an end group without its start, or a reserved wire type (6, 7)
}
