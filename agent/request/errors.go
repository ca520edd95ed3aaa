package request

import "errors"

// ErrMalformed marks a JSON document the agent refuses to decode
// (InvalidArgument at the RPC edge).
var ErrMalformed = errors.New("malformed request")
