package wire

import specs "github.com/opencontainers/runtime-spec/specs-go"

// PodNamespaceTypes are the namespaces a pod's containers may share, by their OCI type
// names, in the order Types lists them.
var PodNamespaceTypes = []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.PIDNamespace}

// Types lists the namespaces p selects, in PodNamespaceTypes' order (none for nil).
func (p *PodNamespaces) Types() []specs.LinuxNamespaceType {
	var out []specs.LinuxNamespaceType
	for i, on := range []bool{p.GetNetwork(), p.GetIpc(), p.GetUts(), p.GetPid()} {
		if on {
			out = append(out, PodNamespaceTypes[i])
		}
	}
	return out
}
