package policy

import (
	"fmt"
	"reflect"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	doc "confguest/agent/api/policy"
)

// requiredNamespaces are the namespaces every container must have of its
// own (network unless the entry allows the guest's).
var requiredNamespaces = []specs.LinuxNamespaceType{
	specs.PIDNamespace, specs.MountNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.CgroupNamespace,
}

// checkSpec checks an OCI spec (decoded once at the RPC edge, package
// request) against entry c: every field is pinned by the entry, checked by
// a fixed rule, set by the agent, or refused (specFields). pod lists the
// pod namespaces the container joins (the request's pod_namespaces).
// Denials name the field, never its value.
func checkSpec(c *Container, s *specs.Spec, stdin bool, pod []specs.LinuxNamespaceType) *Denial {
	rule := "containers[" + c.Name + "]"
	if s.Process == nil {
		return deny(rule, "spec.process", "missing")
	}
	if field, r := refusedField(reflect.ValueOf(s), "", "spec"); field != "" {
		return deny(rule, field, "refused: "+r.why)
	}
	if d := checkProcess(c, nil, rule, "spec.process", s.Process); d != nil {
		return d
	}
	if stdin && !c.Stdin {
		return deny(rule+".stdin", "stdio.stdin", "the policy gives this container no stdin")
	}
	if c.ReadonlyRootfs && (s.Root == nil || !s.Root.Readonly) {
		return deny(rule+".readonly_rootfs", "spec.root.readonly", "the policy requires a read-only root")
	}
	if !c.Hostname.Matches(s.Hostname) {
		return deny(rule+".hostname", "spec.hostname", "does not match")
	}
	for i, m := range s.Mounts {
		if !mountAllowed(c.Mounts, m) {
			return deny(rule+".mounts", fmt.Sprintf("spec.mounts[%d]", i), fmt.Sprintf("mount at %q (type %q, with these options and ID mappings) is not in the policy", m.Destination, m.Type))
		}
	}
	return checkLinux(c, rule, s.Linux, pod)
}

func checkLinux(c *Container, rule string, l *specs.Linux, pod []specs.LinuxNamespaceType) *Denial {
	if l == nil {
		return deny(rule, "spec.linux", "missing: a container needs its own namespaces")
	}
	if d := checkNamespaces(c, rule, l); d != nil {
		return d
	}
	if d := checkPodNamespaces(c, rule, l, pod); d != nil {
		return d
	}
	if r := l.Resources; r != nil {
		for i, d := range r.Devices {
			if d.Allow {
				return deny(rule, fmt.Sprintf("spec.linux.resources.devices[%d]", i), "no policy allows device access")
			}
		}
	}
	for k, v := range l.Sysctl {
		// A fixed rule before the entry's: only a sysctl of a namespace
		// the container has (its own or its pod's) stays in it.
		ns, ok := doc.NamespacedSysctl(k)
		if !ok {
			return deny(rule+".sysctls", "spec.linux.sysctl", fmt.Sprintf("sysctl %q: %v", k, doc.ErrSysctlNotNamespaced))
		}
		if !slices.ContainsFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == ns }) {
			return deny(rule+".sysctls", "spec.linux.sysctl", fmt.Sprintf("sysctl %q needs the container's own or its pod's %s namespace, and it runs in the guest's", k, ns))
		}
		if want, ok := c.Sysctls[k]; !ok || want != v {
			return deny(rule+".sysctls", "spec.linux.sysctl", fmt.Sprintf("sysctl %q is not allowed with this value", k))
		}
	}
	if d := checkSeccomp(c, rule, l.Seccomp); d != nil {
		return d
	}
	for _, req := range []struct {
		name, field string
		want, have  []string
	}{
		{"masked_paths", "spec.linux.maskedPaths", c.RequiredMaskedPaths(), l.MaskedPaths},
		{"readonly_paths", "spec.linux.readonlyPaths", c.RequiredReadonlyPaths(), l.ReadonlyPaths},
	} {
		for _, p := range req.want {
			if !slices.Contains(req.have, p) {
				return deny(rule+"."+req.name, req.field, fmt.Sprintf("%s is missing: the policy requires it", p))
			}
		}
	}
	switch l.RootfsPropagation {
	case "", "private", "rprivate", "slave", "rslave":
	default:
		return deny(rule, "spec.linux.rootfsPropagation", "mounts would propagate to the guest: use private or slave")
	}
	return nil
}

// checkNamespaces requires the container's own namespaces, joins none by
// path, and allows a user namespace only with the entry's exact ID
// mappings.
func checkNamespaces(c *Container, rule string, l *specs.Linux) *Denial {
	have := map[specs.LinuxNamespaceType]bool{}
	for i, ns := range l.Namespaces {
		field := fmt.Sprintf("spec.linux.namespaces[%d]", i)
		if ns.Path != "" {
			return deny(rule, field+".path", fmt.Sprintf("joining an existing %s namespace shares it with the guest", ns.Type))
		}
		switch ns.Type {
		case specs.UserNamespace:
			if len(c.UIDMappings) == 0 {
				return deny(rule+".uid_mappings", field+".type", "a user namespace needs the policy's uid_mappings and gid_mappings")
			}
		case specs.PIDNamespace, specs.MountNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.CgroupNamespace, specs.NetworkNamespace:
		default:
			return deny(rule, field+".type", fmt.Sprintf("no policy allows a %q namespace", ns.Type))
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
	if len(c.UIDMappings) > 0 && !have[specs.UserNamespace] {
		return deny(rule+".uid_mappings", "spec.linux.namespaces", "no user namespace: the policy gives ID mappings")
	}
	if !sameMappings(c.UIDMappings, l.UIDMappings) {
		return deny(rule+".uid_mappings", "spec.linux.uidMappings", "not the ID mappings the policy gives")
	}
	if !sameMappings(c.GIDMappings, l.GIDMappings) {
		return deny(rule+".gid_mappings", "spec.linux.gidMappings", "not the ID mappings the policy gives")
	}
	return nil
}

// checkPodNamespaces allows joining exactly the pod namespaces the entry
// names (pod_namespaces), each of which the spec lists: the agent sets its
// path, so a pod namespace the spec left out could not be joined.
func checkPodNamespaces(c *Container, rule string, l *specs.Linux, pod []specs.LinuxNamespaceType) *Denial {
	want := map[string]bool{}
	for _, t := range c.PodNamespaces {
		want[t] = true
	}
	for _, t := range pod {
		if !want[string(t)] {
			return deny(rule+".pod_namespaces", "pod_namespaces", fmt.Sprintf("the policy does not let this container join the pod's %s namespace", t))
		}
		delete(want, string(t))
		if !slices.ContainsFunc(l.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == t }) {
			return deny(rule, "pod_namespaces", fmt.Sprintf("the pod's %s namespace is joined but spec.linux.namespaces lists no %s namespace", t, t))
		}
	}
	for _, t := range doc.PodNamespaceTypes {
		if want[t] {
			return deny(rule+".pod_namespaces", "pod_namespaces", fmt.Sprintf("the policy requires this container to join the pod's %s namespace", t))
		}
	}
	return nil
}

// checkSeccomp compares the spec's seccomp profile with the entry's hash.
func checkSeccomp(c *Container, rule string, sc *specs.LinuxSeccomp) *Denial {
	switch {
	case sc == nil && c.Seccomp == "":
		return nil
	case sc == nil:
		return deny(rule+".seccomp", "spec.linux.seccomp", "missing: the policy pins a seccomp profile")
	case c.Seccomp == "":
		return deny(rule+".seccomp", "spec.linux.seccomp", "the policy pins no seccomp profile: name its hash in the entry's seccomp")
	}
	if doc.SeccompHash(sc) != c.Seccomp {
		return deny(rule+".seccomp", "spec.linux.seccomp", "not the profile the policy pins: the SHA-256 of its canonical JSON differs")
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
	if !sameValue(c.User.Umask, u.Umask) {
		return deny(rule+".user.umask", field+".user.umask", "not the umask the policy gives")
	}
	if p.ConsoleSize != nil && !p.Terminal {
		return deny(rule+".tty", field+".consoleSize", "a console size without a terminal")
	}
	if d := checkCaps(c, rule, field, p, x != nil); d != nil {
		return d
	}
	switch {
	case x == nil && p.NoNewPrivileges != c.NoNewPrivileges:
		return deny(rule+".no_new_privileges", field+".noNewPrivileges", fmt.Sprintf("must be %v", c.NoNewPrivileges))
	case x != nil && c.NoNewPrivileges && !p.NoNewPrivileges:
		return deny(rule+".no_new_privileges", field+".noNewPrivileges", "an exec'd process cannot turn off the container's no_new_privileges")
	}
	// An exec'd process without rlimits keeps the container's.
	if (x == nil || len(p.Rlimits) > 0) && !sameSet(specRlimits(c.Rlimits), p.Rlimits) {
		return deny(rule+".rlimits", field+".rlimits", "not the rlimits the policy gives")
	}
	if !oomScoreAllowed(c.OOMScoreAdj, p.OOMScoreAdj) {
		return deny(rule+".oom_score_adj", field+".oomScoreAdj", "not the OOM score adjustment the policy gives (without one: none or 0 to 1000)")
	}
	return nil
}

// oomScoreAllowed reports whether a process's oomScoreAdj is the entry's
// or, when the entry pins none, absent or 0 to 1000: a value that only
// makes this container likelier to be killed, never another.
func oomScoreAllowed(pinned, have *int) bool {
	if pinned != nil {
		return sameValue(pinned, have)
	}
	return have == nil || (*have >= 0 && *have <= 1000)
}

// sameValue reports whether two optional values are both absent or equal.
func sameValue[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func specRlimits(rs []doc.Rlimit) []specs.POSIXRlimit {
	out := make([]specs.POSIXRlimit, len(rs))
	for i, r := range rs {
		out[i] = specs.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft}
	}
	return out
}

// sameMappings reports whether a spec's ID mappings are exactly the
// policy's, in order. Compared as specs values with ==, so a field a
// later runtime-spec adds must be zero to match.
func sameMappings(want []doc.IDMapping, have []specs.LinuxIDMapping) bool {
	if len(want) != len(have) {
		return false
	}
	for i, w := range want {
		if have[i] != (specs.LinuxIDMapping{ContainerID: w.ContainerID, HostID: w.HostID, Size: w.Size}) {
			return false
		}
	}
	return true
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
		if a.Destination == m.Destination && a.Type == m.Type && a.Source == m.Source && sameSet(a.Options, m.Options) &&
			sameMappings(a.UIDMappings, m.UIDMappings) && sameMappings(a.GIDMappings, m.GIDMappings) {
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
