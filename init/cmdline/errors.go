package cmdline

import "errors"

var (
	// ErrUnknownKey is a confguest.* key this version does not know.
	ErrUnknownKey = errors.New("unknown confguest parameter")
	// ErrMissing is a required confguest.* parameter that is absent.
	ErrMissing = errors.New("missing confguest parameter")
	// ErrInvalid is a confguest.* parameter with a value out of range or form.
	ErrInvalid = errors.New("invalid confguest parameter")
	// ErrDuplicate is a confguest.* key given more than once.
	ErrDuplicate = errors.New("duplicate confguest parameter")
	// ErrSyntax is a command line that cannot be split into parameters.
	ErrSyntax = errors.New("malformed kernel command line")
)
