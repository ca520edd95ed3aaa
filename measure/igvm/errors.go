package igvm

import "errors"

// Sentinel errors of the reader. Every error Parse returns wraps ErrMalformed, and the
// more specific ones below where they apply.
var (
	// ErrMalformed marks input that is not a well-formed IGVM file.
	ErrMalformed = errors.New("malformed IGVM file")
	// ErrBadMagic: the file does not start with "IGVM".
	ErrBadMagic = errors.New("bad magic")
	// ErrUnsupportedVersion: the format version is not 1.
	ErrUnsupportedVersion = errors.New("unsupported format version")
	// ErrChecksum: the CRC32 in the fixed header does not match.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrTruncated: a size or offset points past the end of the file.
	ErrTruncated = errors.New("truncated")
	// ErrHeaderOrder: a platform header after an initialization header, or either after a
	// directive.
	ErrHeaderOrder = errors.New("headers out of order")
	// ErrHeaderSize: a known header with the wrong length.
	ErrHeaderSize = errors.New("bad header size")
	// ErrOverlap: two directives place pages at the same guest physical address.
	ErrOverlap = errors.New("overlapping pages")
	// ErrAlignment: an address, size or offset that must be aligned is not.
	ErrAlignment = errors.New("misaligned")
	// ErrReference: a directive names a parameter area or platform that does not exist.
	ErrReference = errors.New("bad reference")
)
