package shim

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

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
