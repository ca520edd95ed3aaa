package shim

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/api/policy"
	"confguest/hostside/launcher"
)

// guestSpec is the OCI spec the agent gets for a container whose bundle containerd wrote.
// The bundle spec describes a container on this host: bind mounts of host files, cgroup
// paths, namespace paths, AppArmor and SELinux labels mean nothing in the guest (and the
// agent refuses joining namespaces by path). The guest spec keeps what the workload asked
// for — the process (args, env, cwd, user, capabilities, rlimits, terminal), hostname,
// sysctls, resource limits, seccomp, masked and read-only paths, a read-only root — on top
// of the standard guest mounts and namespaces that `confguest run` uses.
func guestSpec(b *specs.Spec, terminal bool) (*specs.Spec, error) {
	if b.Process == nil {
		return nil, fmt.Errorf("bundle spec has no process: %w", errInvalid)
	}
	p := *b.Process
	p.Terminal = terminal
	p.ApparmorProfile, p.SelinuxLabel = "", ""
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	g := launcher.ContainerSpec(launcher.Process{Args: p.Args}, b.Hostname)
	g.Process = &p
	if b.Root != nil {
		g.Root.Readonly = b.Root.Readonly
	}
	if b.Linux == nil {
		return g, nil
	}
	l := b.Linux
	g.Linux.Sysctl = l.Sysctl
	g.Linux.Seccomp = l.Seccomp
	if len(l.MaskedPaths) > 0 {
		g.Linux.MaskedPaths = l.MaskedPaths
	}
	if len(l.ReadonlyPaths) > 0 {
		g.Linux.ReadonlyPaths = l.ReadonlyPaths
	}
	if r := l.Resources; r != nil && (r.Memory != nil || r.CPU != nil || r.Pids != nil) {
		// Device rules stay out: the guest has its own devices, and the agent refuses
		// rules that allow access.
		g.Linux.Resources = &specs.LinuxResources{Memory: r.Memory, CPU: r.CPU, Pids: r.Pids}
	}
	return g, nil
}

// hostNamespaceFields name, for the namespaces a pod may not share with the host, the pod
// spec field that asks for it. In the sandbox container's bundle spec containerd's CRI
// leaves such a namespace out (customopts.WithoutNamespace).
var hostNamespaceFields = []struct {
	typ   specs.LinuxNamespaceType
	field string
}{
	{specs.PIDNamespace, "hostPID (CRI namespace_options.pid = NODE)"},
	{specs.IPCNamespace, "hostIPC (CRI namespace_options.ipc = NODE)"},
}

// checkSandboxNamespaces refuses a pod whose sandbox spec b asks for the host's PID or IPC
// namespace: the pod runs in a VM, whose guest cannot share them. A pod on the host's
// network (no network namespace) runs as before, in the pod's network namespace in the
// guest.
func checkSandboxNamespaces(id string, b *specs.Spec) error {
	var have []specs.LinuxNamespaceType
	if b.Linux != nil {
		for _, ns := range b.Linux.Namespaces {
			have = append(have, ns.Type)
		}
	}
	for _, h := range hostNamespaceFields {
		if !slices.Contains(have, h.typ) {
			return fmt.Errorf("pod sandbox %s asks for the host's %s namespace with %s: a pod in a confidential VM cannot share a namespace with the host; remove %s from the pod: %w",
				id, h.typ, h.field, strings.Fields(h.field)[0], errInvalid)
		}
	}
	return nil
}

// podNetNamespace is the path of the network namespace containerd's CRI plugin made for the
// pod whose sandbox spec is b (CNI configured its interface there); "" for a pod on the
// host's network, which gets no network device in its VM.
func podNetNamespace(b *specs.Spec) string {
	if b.Linux == nil {
		return ""
	}
	for _, ns := range b.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// podNamespaces are the namespaces of its pod that a CRI container (bundle spec b) joins:
// containerd's CRI gives it the sandbox's network, IPC and UTS namespaces, and the
// sandbox's PID namespace when the pod shares its processes (shareProcessNamespace), each
// as a path under /proc of the sandbox's PID (here the VMM's, sandboxPID). In the guest it
// joins the pod's namespaces there instead, which the agent holds. Joining another
// container's PID namespace (namespace_options.pid = TARGET) is refused: the agent has no
// such namespace to offer.
func podNamespaces(id string, b *specs.Spec, sandboxPID int) ([]specs.LinuxNamespaceType, error) {
	if b.Linux == nil {
		return nil, nil
	}
	var out []specs.LinuxNamespaceType
	for _, ns := range b.Linux.Namespaces {
		if ns.Path == "" {
			continue
		}
		switch ns.Type {
		case specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace:
			out = append(out, ns.Type)
		case specs.PIDNamespace:
			if want := fmt.Sprintf("/proc/%d/ns/pid", sandboxPID); ns.Path != want {
				return nil, fmt.Errorf("container %s joins the PID namespace of another container of its pod (%s, CRI namespace_options.pid = TARGET): not supported in the guest; share the pod's (shareProcessNamespace) or none: %w",
					id, ns.Path, errInvalid)
			}
			out = append(out, ns.Type)
		}
	}
	return out, nil
}

// podSysctls are the sysctls of the pod whose sandbox spec is b (the pod's
// securityContext.sysctls; containerd's CRI puts them in the sandbox's spec only, as runc
// applies them to the namespaces its containers then join). Each must be a sysctl of a
// namespace the pod's containers share in the guest (IPC or network; UTS names are the
// pod's hostname): any other would change the whole guest, and is refused naming it.
func podSysctls(id string, b *specs.Spec) (map[string]string, error) {
	if b.Linux == nil || len(b.Linux.Sysctl) == 0 {
		return nil, nil
	}
	for _, k := range slices.Sorted(maps.Keys(b.Linux.Sysctl)) {
		if _, ok := policy.NamespacedSysctl(k); !ok {
			return nil, fmt.Errorf("pod %s: sysctl %s: %w: remove it from the pod's securityContext.sysctls: %w", id, k, policy.ErrSysctlNotNamespaced, errInvalid)
		}
	}
	return b.Linux.Sysctl, nil
}

// withPodSysctls adds to guest spec g the pod's sysctls of the namespaces in podNS, the
// pod namespaces the container joins; a sysctl the container's own spec sets stays as it
// is.
func withPodSysctls(g *specs.Spec, sysctls map[string]string, podNS []specs.LinuxNamespaceType) {
	for k, v := range sysctls {
		ns, _ := policy.NamespacedSysctl(k)
		if _, set := g.Linux.Sysctl[k]; set || !slices.Contains(podNS, ns) {
			continue
		}
		if g.Linux.Sysctl == nil {
			g.Linux.Sysctl = map[string]string{}
		}
		g.Linux.Sysctl[k] = v
	}
}
