package launcher

import (
	"context"
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
)

// The guest's agent obeys a measured policy only (agent/policy/README.md): the first call
// after boot must be SetPolicy, and under SEV-SNP the SHA-256 of the policy's exact bytes
// must be HOST_DATA. The launcher holds one policy document per guest: Options.Policy, or
// the one UsePolicy gives once the container disks are built. That document sets
// HOST_DATA of an SEV-SNP launch and is what InstallPolicy sends, so the two cannot differ.

// UsePolicy makes doc the guest's policy when it can only be written after the container
// disks are built (it pins their verity root hashes): call it between BuildDisk and Boot.
// Under SEV-SNP, HOST_DATA becomes SHA-256(doc); a --host-data given to New that differs
// is an error.
func (s *Sandbox) UsePolicy(doc []byte) error {
	if s.VM != nil {
		return fmt.Errorf("use policy: the guest is already booted: call UsePolicy before Boot")
	}
	if _, err := policy.Parse(doc); err != nil {
		return fmt.Errorf("use policy: %w: fix the policy (confguest policy generate writes one)", err)
	}
	hd := HostDataFor(doc)
	if s.opts.SEVSNP {
		if s.hostDataGiven && !strings.EqualFold(s.opts.HostData, hd) {
			return fmt.Errorf("--host-data %s differs from the policy's SHA-256 %s: the agent would refuse the policy: drop --host-data", s.opts.HostData, hd)
		}
		s.opts.HostData = hd
		if s.SNP != nil {
			s.SNP.HostData, s.SNP.HostDataFrom = hd, "SHA-256 of the policy for this run"
			s.progress("SEV-SNP HOST_DATA %s (%s)", s.SNP.HostData, s.SNP.HostDataFrom)
		}
	}
	s.opts.Policy = doc
	return nil
}

// Policy returns the policy document the guest gets, nil if none was given yet.
func (s *Sandbox) Policy() []byte { return s.opts.Policy }

// InstallPolicy sends the guest's policy with SetPolicy. Call it right after Boot, before
// anything else: until it succeeds the agent refuses every call but Version, GetReport and
// SetPolicy. It checks that the agent hashed the same bytes and, under SEV-SNP, that it
// bound the policy to HOST_DATA.
func (s *Sandbox) InstallPolicy(ctx context.Context) error {
	doc := s.opts.Policy
	if doc == nil {
		return fmt.Errorf("install policy: %w: give one with Options.Policy or UsePolicy (confguest run --policy FILE)", ErrNoPolicy)
	}
	r, err := s.Agent.SetPolicy(ctx, &agentv1.SetPolicyRequest{Policy: doc})
	switch c := status.Code(err); {
	case c == codes.Unimplemented || c == codes.FailedPrecondition:
		// An image from before the guest required a policy.
		return fmt.Errorf("install the policy in the guest (SetPolicy): %w: the image's agent does not enforce a policy: rebuild the image with make image", err)
	case err != nil:
		return fmt.Errorf("install the policy in the guest (SetPolicy): %w", err)
	}
	want := HostDataFor(doc)
	if !strings.EqualFold(r.GetSha256(), want) {
		return fmt.Errorf("install the policy: the agent hashed it as %q, the launcher as %s: the agent does not speak this API version; rebuild the image with make image", r.GetSha256(), want)
	}
	if s.opts.SEVSNP && !r.GetBound() {
		return fmt.Errorf("install the policy: the agent installed it unbound although the guest runs under SEV-SNP: the image was built for confguest.tee=none; rebuild it with make image")
	}
	how := "bound to HOST_DATA"
	if !r.GetBound() {
		how = "unbound: confguest.tee=none"
	}
	s.progress("policy %s installed (%s)", want, how)
	return nil
}

// PolicyEntry returns the policy entry that admits exactly the container CreateContainer
// creates with process spec s on the disk with verity root hash layer: same rootfs, args,
// env, working directory, user, capabilities, mounts and sysctls. Its stdout and stderr are
// readable; stdin, TTY, exec and attestation are the caller's to allow.
func PolicyEntry(name, layer string, s *specs.Spec) policy.Container {
	c := policy.Container{
		Name:   name,
		Rootfs: policy.Rootfs{Layers: []string{strings.ToLower(layer)}},
		Args:   policy.Exactly(s.Process.Args...),
		Env:    policy.Exactly(s.Process.Env...),
		Cwd:    s.Process.Cwd,
		User:   policy.User{UID: s.Process.User.UID, GID: s.Process.User.GID, AdditionalGIDs: s.Process.User.AdditionalGids},
		TTY:    s.Process.Terminal,
		Stdout: true,
		Stderr: true,
	}
	if caps := s.Process.Capabilities; caps != nil {
		for _, set := range [][]string{caps.Bounding, caps.Effective, caps.Inheritable, caps.Permitted, caps.Ambient} {
			for _, name := range set {
				if !slices.Contains(c.Capabilities, name) {
					c.Capabilities = append(c.Capabilities, name)
				}
			}
		}
	}
	for _, m := range s.Mounts {
		c.Mounts = append(c.Mounts, policy.Mount{Destination: m.Destination, Type: m.Type, Source: m.Source, Options: m.Options})
	}
	if s.Linux != nil && len(s.Linux.Sysctl) > 0 {
		c.Sysctls = s.Linux.Sysctl
	}
	return c
}

// ExecRule returns the exec rule that allows exactly the process Exec sends for p.
func ExecRule(p Process) policy.Exec {
	sp := processSpec(p)
	return policy.Exec{Args: policy.Exactly(sp.Args...), Env: policy.Exactly(sp.Env...), Cwd: sp.Cwd, Stdin: p.Stdin, TTY: p.TTY}
}
