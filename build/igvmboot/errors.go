package igvmboot

import "errors"

var (
	// ErrKernel: the kernel is not a bzImage this builder can boot (too old a boot
	// protocol, not loadable high, setup header out of range).
	ErrKernel = errors.New("unusable kernel image")
	// ErrTooLarge: kernel, initrd or command line do not fit the guest layout.
	ErrTooLarge = errors.New("does not fit the guest")
	// ErrOption: an option value is out of range.
	ErrOption = errors.New("invalid option")
)
