package server

import "errors"

var (
	// ErrBadAddress reports a listen address the agent cannot parse.
	ErrBadAddress = errors.New("bad listen address")
	// ErrInvalidRequest reports a malformed request field outside the
	// container spec (sizes, credit, missing messages).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrTEEMismatch reports confguest.tee=none on a guest with an SEV-SNP
	// device.
	ErrTEEMismatch = errors.New("confguest.tee=none on an SEV-SNP guest")
	// ErrNoPolicyGate reports SetPolicy to an agent started without
	// RequirePolicy.
	ErrNoPolicyGate = errors.New("agent runs without a policy gate")
	// ErrNotDecoded reports a handler called without the request the RPC
	// edge decoded and authorized (a wiring error, never a host's).
	ErrNotDecoded = errors.New("request did not pass the edge's decode step")
)
