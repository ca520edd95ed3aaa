package policy

import "errors"

// ErrInvalidPolicy reports a policy document that does not parse or breaks
// a rule of the format (see agent/policy/README.md).
var ErrInvalidPolicy = errors.New("invalid policy")

// ErrSysctlNotNamespaced reports a sysctl that no namespace of a container
// holds: setting it would change the whole guest (and every other
// container in it).
var ErrSysctlNotNamespaced = errors.New("not a sysctl of the container's ipc, network or uts namespace: it would change the whole guest")
