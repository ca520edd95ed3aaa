package container

import (
	"errors"
	"fmt"
)

// Sentinels callers test with errors.Is; the RPC edge maps them to status
// codes.
var (
	// ErrInvalid marks a request the agent refuses to act on as given.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound reports an unknown container or process.
	ErrNotFound = errors.New("not found")
	// ErrExists reports a container or exec ID already in use.
	ErrExists = errors.New("already exists")
	// ErrWrongState reports a call the container's or process's state does
	// not allow (start twice, exec into a stopped container, ...).
	ErrWrongState = errors.New("wrong state")
	// ErrLimit reports a request over one of the agent's bounds (limits.go).
	ErrLimit = errors.New("resource limit reached")
	// ErrNoDeviceMapper reports a block rootfs on a system without
	// device-mapper support.
	ErrNoDeviceMapper = errors.New("device-mapper not available")
	// ErrIntegrity reports a disk whose content dm-verity refused: it does not
	// match the root hash it was opened with.
	ErrIntegrity = errors.New("integrity check failed")
)

// FieldError names the request or spec field that is invalid and why.
// It matches ErrInvalid.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
