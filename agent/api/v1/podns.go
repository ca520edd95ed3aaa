package agentv1

import (
	"fmt"
	"slices"

	"confguest/agent/api/v1/wire"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// PodNamespaceTypes are the namespaces a pod's containers may share, by their OCI type
// names, in the order Types lists them.
var PodNamespaceTypes = wire.PodNamespaceTypes

// Types lists the namespaces p selects, in PodNamespaceTypes' order (none for nil), as
// the agent's (*wire.PodNamespaces).Types does.
func (p *PodNamespaces) Types() []specs.LinuxNamespaceType {
	if p == nil {
		return nil
	}
	return (&wire.PodNamespaces{Network: p.Network, Ipc: p.Ipc, Uts: p.Uts, Pid: p.Pid}).Types()
}

// NewPodNamespaces is the message that selects types (nil for none); a type that is not
// one of PodNamespaceTypes is an error.
func NewPodNamespaces(types []specs.LinuxNamespaceType) (*PodNamespaces, error) {
	if len(types) == 0 {
		return nil, nil
	}
	p := &PodNamespaces{}
	for _, t := range types {
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
	if n := len(p.Types()); n != len(types) {
		slices.Sort(types)
		return nil, fmt.Errorf("pod namespaces %v: a type given twice", types)
	}
	return p, nil
}
