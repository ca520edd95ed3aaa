//go:build !faultinject

package output

// fault is the fault-injection build's hook on every chunk a container writes (see
// fault_inject.go). The guest image's agent is built without the faultinject tag, so this
// is an empty function the compiler removes.
func fault([]byte) {}
