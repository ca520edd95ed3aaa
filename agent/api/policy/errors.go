package policy

import "errors"

// ErrInvalidPolicy reports a policy document that does not parse or breaks
// a rule of the format (see agent/policy/README.md).
var ErrInvalidPolicy = errors.New("invalid policy")
