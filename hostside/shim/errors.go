package shim

import (
	"fmt"

	"github.com/containerd/containerd/errdefs"
)

// Errors wrap containerd's errdefs classes, which the task API turns into status codes.
var (
	errInvalid      = fmt.Errorf("invalid request: %w", errdefs.ErrInvalidArgument)
	errNotFound     = errdefs.ErrNotFound
	errExists       = errdefs.ErrAlreadyExists
	errPrecondition = errdefs.ErrFailedPrecondition
	errNotImpl      = errdefs.ErrNotImplemented
)
