package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
)

// maxExecArgs bounds the argument count of the exec commands the default policy allows.
const maxExecArgs = 32

// defaultPolicy is the policy of a single container (ctr run) whose pod names none: it
// admits exactly that container as created — its rootfs disk (by verity root hash), args,
// env, working directory, user, capabilities, mounts and sysctls; stdin and a TTY as the
// create asked; stdout and stderr readable — and lets the host exec any command in it (up
// to maxExecArgs arguments) as the container's user, in its working directory, with its
// environment plus any entries, as runc does, and shut the VM down. Pods whose workload needs protection from
// the host's exec name their own policy (AnnotationPolicy).
func defaultPolicy(layer string, g *specs.Spec, stdin bool) ([]byte, error) {
	p := g.Process
	c := policy.Container{
		Name:   "container",
		Rootfs: policy.Rootfs{Layers: []string{strings.ToLower(layer)}},
		Args:   policy.Exactly(p.Args...),
		Env:    policy.Exactly(p.Env...),
		Cwd:    p.Cwd,
		User:   policy.User{UID: p.User.UID, GID: p.User.GID, AdditionalGIDs: p.User.AdditionalGids},
		Stdin:  stdin,
		TTY:    p.Terminal,
		Stdout: true,
		Stderr: true,
	}
	if caps := p.Capabilities; caps != nil {
		for _, set := range [][]string{caps.Bounding, caps.Effective, caps.Inheritable, caps.Permitted, caps.Ambient} {
			for _, name := range set {
				if !slices.Contains(c.Capabilities, name) {
					c.Capabilities = append(c.Capabilities, name)
				}
			}
		}
	}
	for _, m := range g.Mounts {
		c.Mounts = append(c.Mounts, policy.Mount{Destination: m.Destination, Type: m.Type, Source: m.Source, Options: m.Options})
	}
	if g.Linux != nil && len(g.Linux.Sysctl) > 0 {
		c.Sysctls = g.Linux.Sysctl
	}
	if g.Root != nil {
		c.ReadonlyRootfs = g.Root.Readonly
	}
	anything := policy.Match{Pattern: "(?s).*"}
	for n := 1; n <= maxExecArgs; n++ {
		c.Exec = append(c.Exec, policy.Exec{Args: slices.Repeat([]policy.Match{anything}, n), Env: []policy.Match{anything}, Stdin: true, TTY: true})
	}
	// Shutdown lets the shim power the VM off cleanly; the host can stop the VM anyway.
	doc, err := json.Marshal(policy.Policy{Version: 1, Agent: policy.AgentRules{Shutdown: true}, Containers: []policy.Container{c}})
	if err != nil {
		return nil, fmt.Errorf("encode the default policy: %w", err)
	}
	if _, err := policy.Parse(doc); err != nil {
		return nil, fmt.Errorf("the default policy does not parse: %w", err)
	}
	return doc, nil
}

// installPolicy sends the pod's policy with SetPolicy, the first call after boot. A
// policy the pod named must be installed; the default policy may meet an image whose agent
// enforces none (it allows everything then, and says so in the shim's log).
func installPolicy(ctx context.Context, agent agentv1.AgentClient, doc []byte, named bool) error {
	_, err := agent.SetPolicy(ctx, &agentv1.SetPolicyRequest{Policy: doc})
	switch c := status.Code(err); {
	case err == nil:
		return nil
	case !named && (c == codes.FailedPrecondition || c == codes.Unimplemented):
		log.G(ctx).WithError(err).Warn("the guest's agent enforces no policy (an image built before policies were required); running without one")
		return nil
	case named && (c == codes.FailedPrecondition || c == codes.Unimplemented):
		return fmt.Errorf("install the pod's policy (%s) in the guest: %w: the image's agent enforces no policy: rebuild the image with make image", AnnotationPolicy, err)
	case named:
		return fmt.Errorf("install the pod's policy (%s) in the guest: %w", AnnotationPolicy, err)
	default:
		return fmt.Errorf("install the default policy in the guest: %w", err)
	}
}
