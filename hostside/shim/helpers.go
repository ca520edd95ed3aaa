package shim

import (
	"errors"
	"io"
	"strings"

	"confguest/hostside/launcher"
)

func jsonEmpty() io.Reader { return strings.NewReader("{}") }

// isNoGuest reports whether err says the VM was not there (nothing to clean).
func isNoGuest(err error) bool { return errors.Is(err, launcher.ErrNoGuest) }
