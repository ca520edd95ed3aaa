package vmm

import "errors"

var (
	// ErrKVMUnusable means KVM exists but could not run a vCPU; use TCG.
	ErrKVMUnusable = errors.New("KVM cannot run a vCPU here")
	// ErrNotFound means a program the backend needs is not installed.
	ErrNotFound = errors.New("program not found")
	// ErrNotRunning means the VMM is not (or no longer) running.
	ErrNotRunning = errors.New("VMM is not running")
	// ErrAPI means the VMM's API answered a request with an error.
	ErrAPI = errors.New("VMM API error")
)
