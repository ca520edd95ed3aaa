package vmm

import "errors"

var (
	// ErrKVMUnusable means KVM exists but did not run the probe guest in time; use TCG.
	ErrKVMUnusable = errors.New("KVM is not usable here")
	// ErrNotFound means a program the backend needs is not installed.
	ErrNotFound = errors.New("program not found")
	// ErrNotRunning means the VMM is not (or no longer) running.
	ErrNotRunning = errors.New("VMM is not running")
	// ErrAPI means the VMM's API answered a request with an error.
	ErrAPI = errors.New("VMM API error")
	// ErrNoHotplugPort means every PCIe root port of a q35 VM already holds a hot-added
	// disk.
	ErrNoHotplugPort = errors.New("no free PCIe root port for a hot-added disk")
	// ErrVsockStalled means the hybrid vsock backend runs but no longer serves the guest's
	// vsock device: CONNECTs are taken and never answered. Only a new boot helps.
	ErrVsockStalled = errors.New("the vsock backend stopped serving the guest")
)
