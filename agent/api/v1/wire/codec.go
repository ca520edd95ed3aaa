package wire

import (
	"errors"
	"fmt"

	"confguest/agent/pbwire"
)

// The wire format itself is agent/pbwire's, which the generated code calls; what is here
// names the message or field a decoding error is about, and keeps unknown fields.

// Decoding errors; the generated code names the message or field with them.
var (
	errMalformed   = errors.New("truncated or malformed wire data")
	errInvalidUTF8 = errors.New("invalid UTF-8")
	errTooDeep     = errors.New("messages nested too deeply")
)

func malformed(message string) error { return fmt.Errorf("%s: %w", message, errMalformed) }
func invalidUTF8(field string) error { return fmt.Errorf("%s: %w", field, errInvalidUTF8) }
func tooDeep(message string) error   { return fmt.Errorf("%s: %w", message, errTooDeep) }

// appendUnknown appends an unknown field to u, its tag encoded minimally, as protobuf
// keeps it.
func appendUnknown(u []byte, num int32, typ byte, value []byte) []byte {
	return append(pbwire.AppendTag(u, num, typ), value...)
}

// unknownFieldName names the first of the unknown fields raw of the message at path.
func unknownFieldName(path string, raw []byte) string {
	where := "field"
	if path != "" {
		where = path + " field"
	}
	if v, n := pbwire.ConsumeVarint(raw); n > 0 {
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
