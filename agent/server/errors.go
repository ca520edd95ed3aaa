package server

import "errors"

// ErrBadAddress reports a listen address the agent cannot parse.
var ErrBadAddress = errors.New("bad listen address")
