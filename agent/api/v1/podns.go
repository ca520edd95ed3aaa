package agentv1

import (
	"fmt"
	"slices"

	"confguest/agent/api/v1/wire"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// PodNamespaceTypes are the namespaces a pod's containers may share, by their OCI type
// names, in the order the agent's (*wire.PodNamespaces).Types lists them.
var PodNamespaceTypes = wire.PodNamespaceTypes

// NewPodNamespaces is the message that selects types (nil for none); a type that is not
// one of PodNamespaceTypes is an error.
func NewPodNamespaces(types []specs.LinuxNamespaceType) (*PodNamespaces, error) {
	if len(types) == 0 {
		return nil, nil
	}
	p := &PodNamespaces{}
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, t := range types {
		if seen[t] {
			slices.Sort(types)
			return nil, fmt.Errorf("pod namespaces %v: a type given twice", types)
		}
		seen[t] = true
		switch t {
		case specs.NetworkNamespace:
			p.Network = true
		case specs.IPCNamespace:
			p.Ipc = true
		case specs.UTSNamespace:
			p.Uts = true
		case specs.PIDNamespace:
			p.Pid = true
		default:
			return nil, fmt.Errorf("pod namespace %q: a pod shares only %v", t, PodNamespaceTypes)
		}
	}
	return p, nil
}
