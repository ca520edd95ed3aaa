package server

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"confguest/agent/listen"
)

// Listen opens the listener named by addr: "vsock:PORT" (the guest) or
// "unix:PATH" (tests on the host). Everything above the listener is the
// same code path for both.
func Listen(addr string) (net.Listener, error) {
	scheme, rest, ok := strings.Cut(addr, ":")
	if !ok {
		return nil, fmt.Errorf("listen address %q: %w: want vsock:PORT or unix:PATH", addr, ErrBadAddress)
	}
	switch scheme {
	case "vsock":
		port, err := strconv.ParseUint(rest, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w: port must be a number", addr, ErrBadAddress)
		}
		return listen.Vsock(uint32(port), unix.VMADDR_CID_HOST) // the host's connections only
	case "unix":
		if rest == "" {
			return nil, fmt.Errorf("listen address %q: %w: empty socket path", addr, ErrBadAddress)
		}
		return listen.Unix(rest)
	default:
		return nil, fmt.Errorf("listen address %q: %w: unknown scheme %q, want vsock or unix", addr, ErrBadAddress, scheme)
	}
}
