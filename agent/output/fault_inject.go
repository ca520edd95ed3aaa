//go:build faultinject

package output

import "bytes"

// CrashMarker, written by a container in one write, makes an agent built with the
// faultinject tag panic in the goroutine that drains that container's output: an
// unrecovered panic ends the agent as a crash does, in the middle of a stream. The
// qemu-tests' agent-crash fault test boots such an agent on a root filesystem of its own;
// the guest image's agent is built without the tag and has neither the marker nor the
// panic.
const CrashMarker = "confguest-faultinject: crash the agent"

func fault(b []byte) {
	if bytes.Contains(b, []byte(CrashMarker)) {
		panic("faultinject: " + CrashMarker)
	}
}
