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
	// ErrNoPolicyGate means the guest's agent enforces no policy (an image built before
	// the guest required one).
	ErrNoPolicyGate = errors.New("the image's agent enforces no policy")
)
