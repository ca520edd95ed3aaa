package policy

import (
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// requiredNamespaces are the namespaces every container must have of its
// own (network unless the entry allows the guest's).
var requiredNamespaces = []specs.LinuxNamespaceType{
	specs.PIDNamespace, specs.MountNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.CgroupNamespace,
}

// checkSpec checks the security-relevant fields of an OCI spec (decoded
// once at the RPC edge, package request) against entry c. Denials name
// the field, never its value.
func checkSpec(c *Container, s *specs.Spec, stdin bool) *Denial {
	rule := "containers[" + c.Name + "]"
	if s.Process == nil {
		return deny(rule, "spec.process", "missing")
	}
	if d := checkProcess(c, nil, rule, "spec.process", s.Process); d != nil {
		return d
	}
	if stdin && !c.Stdin {
		return deny(rule+".stdin", "stdio.stdin", "the policy gives this container no stdin")
	}
	if s.Hooks != nil && (len(s.Hooks.Prestart)+len(s.Hooks.CreateRuntime)+len(s.Hooks.CreateContainer)+
		len(s.Hooks.StartContainer)+len(s.Hooks.Poststart)+len(s.Hooks.Poststop) > 0) {
		return deny(rule, "spec.hooks", "OCI hooks run in the guest, outside the container: no policy allows them")
	}
	if c.ReadonlyRootfs && (s.Root == nil || !s.Root.Readonly) {
		return deny(rule+".readonly_rootfs", "spec.root.readonly", "the policy requires a read-only root")
	}
	for i, m := range s.Mounts {
		if !mountAllowed(c.Mounts, m) {
			return deny(rule+".mounts", fmt.Sprintf("spec.mounts[%d]", i), fmt.Sprintf("mount at %q (type %q) is not in the policy", m.Destination, m.Type))
		}
	}
	return checkLinux(c, rule, s.Linux)
}

func checkLinux(c *Container, rule string, l *specs.Linux) *Denial {
	if l == nil {
		return deny(rule, "spec.linux", "missing: a container needs its own namespaces")
	}
	have := map[specs.LinuxNamespaceType]bool{}
	for i, ns := range l.Namespaces {
		if ns.Path != "" {
			return deny(rule, fmt.Sprintf("spec.linux.namespaces[%d].path", i), fmt.Sprintf("joining an existing %s namespace shares it with the guest", ns.Type))
		}
		have[ns.Type] = true
	}
	for _, t := range requiredNamespaces {
		if !have[t] {
			return deny(rule, "spec.linux.namespaces", fmt.Sprintf("no %s namespace: the container would share the guest's", t))
		}
	}
	if !have[specs.NetworkNamespace] && !c.GuestNetwork {
		return deny(rule+".guest_network", "spec.linux.namespaces", "no network namespace: the policy does not allow the guest's network")
	}
	if len(l.Devices) > 0 {
		return deny(rule, "spec.linux.devices", "no policy allows device nodes")
	}
	if r := l.Resources; r != nil {
		for i, d := range r.Devices {
			if d.Allow {
				return deny(rule, fmt.Sprintf("spec.linux.resources.devices[%d]", i), "no policy allows device access")
			}
		}
	}
	for k, v := range l.Sysctl {
		if want, ok := c.Sysctls[k]; !ok || want != v {
			return deny(rule+".sysctls", "spec.linux.sysctl", fmt.Sprintf("sysctl %q is not allowed with this value", k))
		}
	}
	if c.RequireSeccomp && l.Seccomp == nil {
		return deny(rule+".require_seccomp", "spec.linux.seccomp", "the policy requires a seccomp profile")
	}
	switch l.RootfsPropagation {
	case "", "private", "rprivate", "slave", "rslave":
	default:
		return deny(rule, "spec.linux.rootfsPropagation", "mounts would propagate to the guest: use private or slave")
	}
	return nil
}

// checkProcess checks an OCI process against entry c: its init process
// when x is nil, else a process exec'd under rule x. field is the request
// field it came from.
func checkProcess(c *Container, x *Exec, rule, field string, p *specs.Process) *Denial {
	args, env, wantCwd, tty := c.Args, []Match(nil), c.WorkingDir(), c.TTY
	if x != nil {
		args, env, tty = x.Args, x.Env, x.TTY
		if x.Cwd != "" {
			wantCwd = x.Cwd
		}
	}
	if len(p.Args) != len(args) {
		return deny(rule+".args", field+".args", fmt.Sprintf("%d arguments, the policy allows %d", len(p.Args), len(args)))
	}
	for i, a := range p.Args {
		if !args[i].Matches(a) {
			return deny(rule+".args", fmt.Sprintf("%s.args[%d]", field, i), "does not match")
		}
	}
	for i, e := range p.Env {
		match := func(m Match) bool { return m.Matches(e) }
		if !slices.ContainsFunc(c.Env, match) && !slices.ContainsFunc(env, match) {
			return deny(rule+".env", fmt.Sprintf("%s.env[%d]", field, i), "matches no allowed entry")
		}
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if cwd != wantCwd {
		return deny(rule+".cwd", field+".cwd", "not the working directory the policy gives")
	}
	if p.Terminal && !tty {
		return deny(rule+".tty", field+".terminal", "the policy allows no terminal")
	}
	u := p.User
	if u.UID != c.User.UID || u.GID != c.User.GID || !sameSet(u.AdditionalGids, c.User.AdditionalGIDs) {
		return deny(rule+".user", field+".user", "not the user and groups the policy gives")
	}
	return checkCaps(c, rule, field, p, x != nil)
}

// requestCaps returns the capability sets of an OCI process. An absent
// capabilities object is every set empty: that is what the agent runs.
func requestCaps(p *specs.Process) Capabilities {
	c := p.Capabilities
	if c == nil {
		return Capabilities{}
	}
	return Capabilities{Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable, Permitted: c.Permitted, Ambient: c.Ambient}
}

// checkCaps compares a process's capability sets with the entry's, set
// by set: equal for a container's init (exact), a subset for an exec'd
// process (subset).
func checkCaps(c *Container, rule, field string, p *specs.Process, subset bool) *Denial {
	want := c.Capabilities.Sets()
	for i, set := range requestCaps(p).Sets() {
		allowed := want[i].Caps
		for _, capName := range set.Caps {
			if !slices.Contains(allowed, capName) {
				return deny(rule+".capabilities."+set.Name, field+".capabilities."+set.Name, fmt.Sprintf("%s is not in the policy's %s set", capName, set.Name))
			}
		}
		if subset {
			continue
		}
		for _, capName := range allowed {
			if !slices.Contains(set.Caps, capName) {
				return deny(rule+".capabilities."+set.Name, field+".capabilities."+set.Name, fmt.Sprintf("%s of the policy's %s set is missing: the policy pins each set exactly", capName, set.Name))
			}
		}
	}
	return nil
}

func mountAllowed(allowed []Mount, m specs.Mount) bool {
	for _, a := range allowed {
		if a.Destination == m.Destination && a.Type == m.Type && a.Source == m.Source && sameSet(a.Options, m.Options) {
			return true
		}
	}
	return false
}

// sameSet reports whether a and b hold the same elements, ignoring order
// and repetition.
func sameSet[T comparable](a, b []T) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}
