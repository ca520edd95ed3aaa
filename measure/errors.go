package measure

import "errors"

// Sentinel errors of the measure package. Returned errors wrap one of these with the
// details (which input, which offset) and what to do about it.
var (
	// ErrTruncated: the firmware image is too short for the structure being read.
	ErrTruncated = errors.New("firmware image truncated")
	// ErrNoFooterTable: the firmware has no OVMF footer table GUID at its end.
	ErrNoFooterTable = errors.New("no OVMF footer table")
	// ErrOutOfRange: a table entry, metadata header or section lies outside the image or
	// the 4 GiB guest physical range.
	ErrOutOfRange = errors.New("out of range")
	// ErrMissingEntry: the footer table lacks an entry SEV-SNP needs.
	ErrMissingEntry = errors.New("missing OVMF footer table entry")
	// ErrMetadata: the SEV metadata (the "ASEV" block) is malformed.
	ErrMetadata = errors.New("malformed OVMF SEV metadata")
	// ErrNoKernelHashes: a kernel was given but the firmware cannot verify kernel hashes.
	ErrNoKernelHashes = errors.New("firmware has no kernel hashes section")
	// ErrUnknownVCPUType: the vCPU type is not one of VCPUTypes().
	ErrUnknownVCPUType = errors.New("unknown vCPU type")
	// ErrInvalidOption: an option value is unusable (vCPU count, digest, flags combination).
	ErrInvalidOption = errors.New("invalid option")
)
