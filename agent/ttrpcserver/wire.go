package ttrpcserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The protobuf wire types (protobuf's encoding guide, "Message Structure").
const (
	wireVarint     = 0
	wireFixed64    = 1
	wireBytes      = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

// maxFieldNumber is the largest field number protobuf allows (2^29-1).
const maxFieldNumber = 1<<29 - 1

// maxGroupDepth bounds the nesting of groups skipped as unknown fields, as
// protobuf-go's default recursion limit does.
const maxGroupDepth = 10000

var errTruncated = errors.New("truncated protobuf data")

// request is ttrpc's Request message (request.proto in containerd/ttrpc).
// Its metadata (field 5) is checked and dropped: the server does not use it.
type request struct {
	service     string // field 1
	method      string // field 2
	payload     []byte // field 3; nil when absent or empty
	timeoutNano int64  // field 4
}

// decodeRequest decodes a ttrpc Request. It accepts and refuses what
// proto.Unmarshal does for ttrpc's generated type: unknown fields and known
// fields of another wire type are skipped, and truncated data, invalid
// field numbers, stray end-groups and strings that are not UTF-8 are errors.
func decodeRequest(b []byte) (request, error) {
	var r request
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return request{}, err
		}
		b = b[n:]
		n, err = r.decodeField(b, num, typ)
		if err != nil {
			return request{}, fmt.Errorf("field %d: %w", num, err)
		}
		b = b[n:]
	}
	return r, nil
}

// decodeField decodes the value of field num at the start of b into r and
// returns its length.
func (r *request) decodeField(b []byte, num, typ int) (int, error) {
	if num == 4 && typ == wireVarint {
		x, n, err := consumeVarint(b)
		r.timeoutNano = int64(x)
		return n, err
	}
	if num < 1 || num > 5 || num == 4 || typ != wireBytes {
		return skipValue(b, num, typ, 0)
	}
	v, n, err := consumeBytes(b)
	if err != nil {
		return 0, err
	}
	switch num {
	case 1:
		r.service, err = decodeString(v)
	case 2:
		r.method, err = decodeString(v)
	case 3:
		// As protobuf-go does for proto3 bytes: empty is absent.
		r.payload = nil
		if len(v) > 0 {
			r.payload = v
		}
	case 5:
		err = checkKeyValue(v)
	}
	return n, err
}

// checkKeyValue checks a ttrpc KeyValue (metadata entry) as proto.Unmarshal
// would: two UTF-8 strings, unknown fields skipped.
func checkKeyValue(b []byte) error {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == wireBytes {
			var v []byte
			v, n, err = consumeBytes(b)
			if err == nil {
				_, err = decodeString(v)
			}
		} else {
			n, err = skipValue(b, num, typ, 0)
		}
		if err != nil {
			return fmt.Errorf("metadata field %d: %w", num, err)
		}
		b = b[n:]
	}
	return nil
}

// encodeResponse encodes a ttrpc Response: its status (a google.rpc.Status)
// always present, as ttrpc's server sends it even when OK, and the payload
// when not empty. A message that is not valid UTF-8 has its bad bytes
// replaced, since the client's proto.Unmarshal would refuse it.
func encodeResponse(code Code, message string, payload []byte) []byte {
	var st []byte
	if code != OK {
		st = appendTag(st, 1, wireVarint)
		st = binary.AppendUvarint(st, uint64(int64(code)))
	}
	if message != "" {
		st = appendString(st, 2, strings.ToValidUTF8(message, "\uFFFD"))
	}
	b := make([]byte, 0, len(st)+len(payload)+16)
	b = appendTag(b, 1, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(st)))
	b = append(b, st...)
	if len(payload) > 0 {
		b = appendTag(b, 2, wireBytes)
		b = binary.AppendUvarint(b, uint64(len(payload)))
		b = append(b, payload...)
	}
	return b
}

func appendTag(b []byte, num int, typ int) []byte {
	return binary.AppendUvarint(b, uint64(num)<<3|uint64(typ))
}

func appendString(b []byte, num int, s string) []byte {
	b = appendTag(b, num, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// consumeVarint decodes the varint at the start of b and its length.
func consumeVarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, 0, errTruncated
	case n < 0:
		return 0, 0, errors.New("varint overflows 64 bits")
	}
	return v, n, nil
}

// consumeTag decodes a field's tag: its number, wire type and length.
func consumeTag(b []byte) (num int, typ int, n int, err error) {
	v, n, err := consumeVarint(b)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("tag: %w", err)
	}
	num64 := v >> 3
	if num64 < 1 || num64 > maxFieldNumber {
		return 0, 0, 0, fmt.Errorf("invalid field number %d", num64)
	}
	return int(num64), int(v & 7), n, nil
}

// consumeBytes decodes a length-delimited value: the bytes and the length
// consumed, prefix included.
func consumeBytes(b []byte) ([]byte, int, error) {
	l, n, err := consumeVarint(b)
	if err != nil {
		return nil, 0, err
	}
	if l > uint64(len(b)-n) {
		return nil, 0, fmt.Errorf("length %d beyond the %d bytes left: %w", l, len(b)-n, errTruncated)
	}
	return b[n : n+int(l)], n + int(l), nil
}

// skipValue returns the length of the value of field num with wire type
// typ at the start of b, groups included.
func skipValue(b []byte, num, typ, depth int) (int, error) {
	switch typ {
	case wireVarint:
		_, n, err := consumeVarint(b)
		return n, err
	case wireFixed64:
		return fixed(b, 8)
	case wireFixed32:
		return fixed(b, 4)
	case wireBytes:
		_, n, err := consumeBytes(b)
		return n, err
	case wireStartGroup:
		return skipGroup(b, num, depth+1)
	case wireEndGroup:
		return 0, fmt.Errorf("end of group %d that was not started", num)
	}
	return 0, fmt.Errorf("invalid wire type %d", typ)
}

func fixed(b []byte, size int) (int, error) {
	if len(b) < size {
		return 0, errTruncated
	}
	return size, nil
}

// skipGroup returns the length of a group's fields and its end tag. Its
// errors are not wrapped once per nesting level: that would make deeply
// nested input cost time quadratic in its length.
func skipGroup(b []byte, num, depth int) (int, error) {
	if depth > maxGroupDepth {
		return 0, fmt.Errorf("groups nested deeper than %d", maxGroupDepth)
	}
	total := 0
	for {
		inner, typ, n, err := consumeTag(b[total:])
		if err != nil {
			return 0, err
		}
		total += n
		if typ == wireEndGroup {
			if inner != num {
				return 0, fmt.Errorf("group %d ended by end-group %d", num, inner)
			}
			return total, nil
		}
		n, err = skipValue(b[total:], inner, typ, depth)
		if err != nil {
			return 0, err
		}
		total += n
	}
}

func decodeString(v []byte) (string, error) {
	if !utf8.Valid(v) {
		return "", errors.New("string is not valid UTF-8")
	}
	return string(v), nil
}
