package launcher

import "errors"

var (
	// ErrBadName means a guest name is not usable.
	ErrBadName = errors.New("bad guest name")
	// ErrExists means a guest of that name already runs.
	ErrExists = errors.New("guest already exists")
	// ErrNoGuest means no running guest has that name.
	ErrNoGuest = errors.New("no such guest")
	// ErrVMMDied means the VMM exited while the launcher still needed it.
	ErrVMMDied = errors.New("VMM exited")
	// ErrUnknownVMM means --vmm named a backend that does not exist.
	ErrUnknownVMM = errors.New("unknown VMM")
	// ErrNoPolicy means a guest was to get its policy but none was given.
	ErrNoPolicy = errors.New("no policy for the guest")
)
