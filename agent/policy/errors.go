package policy

import (
	"errors"

	doc "confguest/agent/api/policy"
)

var (
	// ErrInvalidPolicy reports a policy document that does not parse or
	// breaks a rule of the format (see README.md); it is the format
	// package's error.
	ErrInvalidPolicy = doc.ErrInvalidPolicy
	// ErrNoPolicy reports a request made before a policy was installed.
	ErrNoPolicy = errors.New("no policy installed")
	// ErrNotBound reports a policy whose SHA-256 differs from the HOST_DATA
	// of the guest's SEV-SNP report.
	ErrNotBound = errors.New("policy not bound to HOST_DATA")
	// ErrPoisoned reports a request after a failed binding: the agent
	// refuses everything until the VM is restarted.
	ErrPoisoned = errors.New("agent refuses all requests after a policy binding failure")
)
