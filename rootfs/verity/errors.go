package verity

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these, so
// callers can test with errors.Is and still print a message that names the
// file, the block and the fix.
var (
	// ErrBadParams means the parameters are not usable: an unknown
	// algorithm, a block size that is not a power of two, malformed hex, a
	// hash offset inside the data area.
	ErrBadParams = errors.New("invalid verity parameters")
	// ErrEmpty means there is no data to protect.
	ErrEmpty = errors.New("no data blocks")
	// ErrTruncated means the file ends before the end of the hash tree (or
	// the data area).
	ErrTruncated = errors.New("image truncated")
	// ErrSuperblock means the on-disk superblock is missing or disagrees
	// with the parameters.
	ErrSuperblock = errors.New("verity superblock mismatch")
	// ErrHashBlock means a hash block does not match the digest its parent
	// (or the root hash) records for it.
	ErrHashBlock = errors.New("hash block corrupt")
	// ErrDataBlock means a data block does not match its leaf digest.
	ErrDataBlock = errors.New("data block corrupt")
)
