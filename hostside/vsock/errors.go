package vsock

import "errors"

var (
	// ErrRefused means the VMM closed the connection without answering CONNECT: nothing in
	// the guest listens on the port (yet).
	ErrRefused = errors.New("connection refused by guest")
	// ErrNoAnswer means the guest did not accept a connection before the deadline.
	ErrNoAnswer = errors.New("guest did not answer")
	// ErrProtocol means the socket answered something that is not a hybrid vsock reply.
	ErrProtocol = errors.New("not a hybrid vsock reply")
)
