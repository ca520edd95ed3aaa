package ttrpcserver

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"confguest/agent/pbwire"
)

var errMalformed = errors.New("truncated or malformed protobuf data")

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
		num, typ, n := pbwire.ConsumeTag(b)
		if n < 0 {
			return request{}, fmt.Errorf("tag: %w", errMalformed)
		}
		b = b[n:]
		n, err := r.decodeField(b, num, typ)
		if err != nil {
			return request{}, fmt.Errorf("field %d: %w", num, err)
		}
		b = b[n:]
	}
	return r, nil
}

// decodeField decodes the value of field num at the start of b into r and
// returns its length.
func (r *request) decodeField(b []byte, num int32, typ byte) (int, error) {
	if num == 4 && typ == pbwire.VarintType {
		x, n := pbwire.ConsumeVarint(b)
		if n < 0 {
			return 0, errMalformed
		}
		r.timeoutNano = int64(x)
		return n, nil
	}
	if num < 1 || num > 5 || num == 4 || typ != pbwire.BytesType {
		return skipValue(b, num, typ)
	}
	v, n := pbwire.ConsumeBytes(b)
	if n < 0 {
		return 0, errMalformed
	}
	var err error
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
		num, typ, n := pbwire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("metadata tag: %w", errMalformed)
		}
		b = b[n:]
		var err error
		if (num == 1 || num == 2) && typ == pbwire.BytesType {
			var v []byte
			if v, n = pbwire.ConsumeBytes(b); n < 0 {
				err = errMalformed
			} else {
				_, err = decodeString(v)
			}
		} else {
			n, err = skipValue(b, num, typ)
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
		st = pbwire.AppendTag(st, 1, pbwire.VarintType)
		st = pbwire.AppendVarint(st, uint64(int64(code)))
	}
	if message != "" {
		st = pbwire.AppendTag(st, 2, pbwire.BytesType)
		st = pbwire.AppendString(st, strings.ToValidUTF8(message, "\uFFFD"))
	}
	b := make([]byte, 0, len(st)+len(payload)+16)
	b = pbwire.AppendTag(b, 1, pbwire.BytesType)
	b = pbwire.AppendBytes(b, st)
	if len(payload) > 0 {
		b = pbwire.AppendTag(b, 2, pbwire.BytesType)
		b = pbwire.AppendBytes(b, payload)
	}
	return b
}

// skipValue is the length of the value of an unknown field num of wire type typ at the
// start of b, groups included.
func skipValue(b []byte, num int32, typ byte) (int, error) {
	n := pbwire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, errMalformed
	}
	return n, nil
}

func decodeString(v []byte) (string, error) {
	if !utf8.Valid(v) {
		return "", errors.New("string is not valid UTF-8")
	}
	return string(v), nil
}
