package launcher

import (
	"context"
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
)

// The guest's agent obeys a measured policy only (agent/policy/README.md): the first call
// after boot must be SetPolicy, and under SEV-SNP the SHA-256 of the policy's exact bytes
// must be HOST_DATA. Sandbox.Boot takes the policy document: it sets HOST_DATA of an
// SEV-SNP launch and is what Boot installs, so the two cannot differ, and nothing reaches
// the agent before it.

// settlePolicy checks doc before boot and, under SEV-SNP, makes its SHA-256 HOST_DATA; a
// --host-data given to New that differs is an error.
func (s *Sandbox) settlePolicy(doc []byte) error {
	if doc != nil {
		if _, err := policy.Parse(doc); err != nil {
			return fmt.Errorf("the guest's policy: %w: fix the policy (confguest policy generate writes one)", err)
		}
	}
	if !s.opts.SEVSNP || doc == nil {
		return nil
	}
	flag := ""
	if s.hostDataGiven {
		flag = s.opts.HostData
	}
	hd, from, err := snpHostData(flag, doc)
	if err != nil {
		return err
	}
	s.opts.HostData = hd
	if s.snp != nil {
		s.snp.HostData, s.snp.HostDataFrom = hd, from+" for this run"
		s.progress("SEV-SNP HOST_DATA %s (%s)", s.snp.HostData, s.snp.HostDataFrom)
	}
	return nil
}

// SetPolicy installs doc as the guest's policy and checks that the agent hashed the same
// bytes. On a guest booted without a policy it is the first policy, which under SEV-SNP
// must be bound to HOST_DATA; otherwise it replaces the policy in force, which must allow
// that (agent.replace_policy).
func (g *Guest) SetPolicy(ctx context.Context, doc []byte) error {
	if _, err := policy.Parse(doc); err != nil {
		return fmt.Errorf("the guest's policy: %w", err)
	}
	return g.installPolicy(ctx, doc, !g.installed)
}

// installPolicy sends doc with SetPolicy and checks the answer: the agent must have hashed
// the same bytes and, for the first policy of an SEV-SNP guest, bound it to HOST_DATA.
func (g *Guest) installPolicy(ctx context.Context, doc []byte, first bool) error {
	r, err := g.agent.SetPolicy(ctx, &agentv1.SetPolicyRequest{Policy: doc})
	switch c := status.Code(err); {
	case c == codes.Unimplemented || c == codes.FailedPrecondition:
		// An image from before the guest required a policy.
		return fmt.Errorf("install the policy in the guest (SetPolicy): %w: %w: rebuild the image with make image", ErrNoPolicyGate, err)
	case err != nil:
		return fmt.Errorf("install the policy in the guest (SetPolicy): %w", err)
	}
	want := HostDataFor(doc)
	if !strings.EqualFold(r.GetSha256(), want) {
		return fmt.Errorf("install the policy: the agent hashed it as %q, the host as %s: the agent does not speak this API version; rebuild the image with make image", r.GetSha256(), want)
	}
	if first && g.s.opts.SEVSNP && !r.GetBound() {
		return fmt.Errorf("install the policy: the agent installed it unbound although the guest runs under SEV-SNP: the image was built for confguest.tee=none; rebuild it with make image")
	}
	how := "bound to HOST_DATA"
	switch {
	case !first:
		how = "replacing the policy in force"
	case !r.GetBound():
		how = "unbound: confguest.tee=none"
	}
	g.installed = true
	g.s.progress("policy %s installed (%s)", want, how)
	return nil
}

// PolicyEntry returns the policy entry that admits exactly the container CreateContainer
// creates with spec s on the disk with verity root hash layer: same rootfs, process (args,
// env, working directory, user and umask, capability sets, no_new_privileges, rlimits, OOM
// score), hostname, mounts, masked and read-only paths, sysctls, seccomp profile (by hash),
// ID mappings and read-only root. Its stdout and stderr are readable; stdin, exec and
// attestation are the caller's to allow.
func PolicyEntry(name, layer string, s *specs.Spec) policy.Container {
	p := s.Process
	c := policy.Container{
		Name:            name,
		Rootfs:          policy.Rootfs{Layers: []string{strings.ToLower(layer)}},
		Args:            policy.Exactly(p.Args...),
		Env:             policy.Exactly(p.Env...),
		Cwd:             p.Cwd,
		User:            policy.User{UID: p.User.UID, GID: p.User.GID, AdditionalGIDs: p.User.AdditionalGids, Umask: p.User.Umask},
		NoNewPrivileges: p.NoNewPrivileges,
		OOMScoreAdj:     p.OOMScoreAdj,
		Hostname:        policy.Match{Exact: s.Hostname},
		TTY:             p.Terminal,
		Stdout:          true,
		Stderr:          true,
		// Pinned as sent: none when the spec has none (nil would mean the defaults).
		MaskedPaths:   []string{},
		ReadonlyPaths: []string{},
	}
	if caps := p.Capabilities; caps != nil {
		c.Capabilities = policy.Capabilities{Bounding: caps.Bounding, Effective: caps.Effective,
			Inheritable: caps.Inheritable, Permitted: caps.Permitted, Ambient: caps.Ambient}
	}
	for _, r := range p.Rlimits {
		c.Rlimits = append(c.Rlimits, policy.Rlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
	}
	for _, m := range s.Mounts {
		c.Mounts = append(c.Mounts, policy.Mount{Destination: m.Destination, Type: m.Type, Source: m.Source, Options: m.Options,
			UIDMappings: idMappings(m.UIDMappings), GIDMappings: idMappings(m.GIDMappings)})
	}
	if s.Root != nil {
		c.ReadonlyRootfs = s.Root.Readonly
	}
	if l := s.Linux; l != nil {
		if len(l.Sysctl) > 0 {
			c.Sysctls = l.Sysctl
		}
		c.MaskedPaths = append(c.MaskedPaths, l.MaskedPaths...)
		c.ReadonlyPaths = append(c.ReadonlyPaths, l.ReadonlyPaths...)
		if l.Seccomp != nil {
			c.Seccomp = policy.SeccompHash(l.Seccomp)
		}
		c.UIDMappings, c.GIDMappings = idMappings(l.UIDMappings), idMappings(l.GIDMappings)
	}
	return c
}

func idMappings(ms []specs.LinuxIDMapping) []policy.IDMapping {
	var out []policy.IDMapping
	for _, m := range ms {
		out = append(out, policy.IDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size})
	}
	return out
}

// ExecRule returns the exec rule that allows exactly the process Exec sends for p.
func ExecRule(p Process) policy.Exec {
	sp := processSpec(p)
	return policy.Exec{Args: policy.Exactly(sp.Args...), Env: policy.Exactly(sp.Env...), Cwd: sp.Cwd, Stdin: p.Stdin, TTY: p.TTY}
}
