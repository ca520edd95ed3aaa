package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/api/policy"
	"confguest/hostside/launcher"
)

// maxExecArgs bounds the argument count of the exec commands the default policies allow.
const maxExecArgs = 32

// containerEntry is the policy entry, named name, that admits exactly the container
// created with guest spec g on the layer with verity root hash layer (launcher.PolicyEntry:
// its rootfs disk, process, hostname, mounts, paths, sysctls, seccomp); stdin and
// a TTY as the create asked; stdout and stderr readable. It lets the host exec any command
// in the container (up to maxExecArgs arguments) as the container's user, in its working
// directory, with its environment plus any entries, as runc does.
func containerEntry(name, layer string, g *specs.Spec, stdin bool) policy.Container {
	c := launcher.PolicyEntry(name, layer, g)
	c.Stdin = stdin
	anything := policy.Match{Pattern: "(?s).*"}
	for n := 1; n <= maxExecArgs; n++ {
		c.Exec = append(c.Exec, policy.Exec{Args: slices.Repeat([]policy.Match{anything}, n), Env: []policy.Match{anything}, Stdin: true, TTY: true})
	}
	return c
}

// defaultPolicy is the policy of a single container (ctr run) whose pod names none: the
// entry "container" (containerEntry) and Shutdown, so the shim can power the VM off
// cleanly (the host can stop the VM anyway). Pods whose workload needs protection from the
// host's exec name their own policy (AnnotationPolicy).
func defaultPolicy(layer string, g *specs.Spec, stdin bool) ([]byte, error) {
	return encodePolicy(policy.Policy{
		Version:    policy.Version,
		Agent:      policy.AgentRules{Shutdown: true},
		Containers: []policy.Container{containerEntry("container", layer, g, stdin)},
	})
}

// podBasePolicy is the policy a CRI pod that names none (no AnnotationPolicy) boots with:
// no containers; Stats, Shutdown and replacing the policy allowed. Its SHA-256 is the
// HOST_DATA of such a pod under SEV-SNP. deploy/pod-default-policy.json holds the same
// bytes, and the README prints its SHA-256.
//
// As each container of the pod is created, the shim replaces the policy with podPolicyFor
// the pod's containers so far: the host decides which containers the pod runs, and each
// is then held to what it was created with.
const podBasePolicy = `{
  "version": 1,
  "agent": {"stats": true, "shutdown": true, "replace_policy": true},
  "containers": []
}
`

// podPolicyFor is the replacement of podBasePolicy that admits entries (containerEntry,
// named by container ID) and keeps the base's agent rules, replace_policy included.
func podPolicyFor(entries []policy.Container) ([]byte, error) {
	base, err := policy.Parse([]byte(podBasePolicy))
	if err != nil {
		return nil, fmt.Errorf("the pod base policy does not parse: %w", err)
	}
	base.Containers = entries
	return encodePolicy(*base)
}

func encodePolicy(p policy.Policy) ([]byte, error) {
	doc, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode the default policy: %w", err)
	}
	if _, err := policy.Parse(doc); err != nil {
		return nil, fmt.Errorf("the default policy does not parse: %w", err)
	}
	return doc, nil
}

// podDefault is the state of a pod under the default pod policy: the entries of its
// containers, in creation order.
type podDefault struct {
	entries []policy.Container
}

// admit installs the pod policy that adds entry to the pod's containers; the entry counts
// once commit is called (after the container was created). Called with s.mu held.
func (d *podDefault) admit(ctx context.Context, g *launcher.Guest, entry policy.Container) (commit func(), err error) {
	entries := append(slices.Clone(d.entries), entry)
	if err := d.install(ctx, g, entries); err != nil {
		return nil, fmt.Errorf("admit container %s: %w", entry.Name, err)
	}
	return func() { d.entries = entries }, nil
}

// revert reinstalls the pod policy of the committed entries, after a create that failed.
func (d *podDefault) revert(ctx context.Context, g *launcher.Guest) {
	if err := d.install(ctx, g, d.entries); err != nil {
		log.G(ctx).WithError(err).Warn("restore the pod's default policy after a failed create")
	}
}

// forget installs the pod policy without the entry of a deleted container.
func (d *podDefault) forget(ctx context.Context, g *launcher.Guest, id string) {
	entries := slices.DeleteFunc(slices.Clone(d.entries), func(c policy.Container) bool { return c.Name == id })
	if len(entries) == len(d.entries) {
		return
	}
	d.entries = entries
	if err := d.install(ctx, g, entries); err != nil {
		log.G(ctx).WithError(err).WithField("id", id).Warn("drop a deleted container from the pod's default policy")
	}
}

func (d *podDefault) install(ctx context.Context, g *launcher.Guest, entries []policy.Container) error {
	doc, err := podPolicyFor(entries)
	if err != nil {
		return err
	}
	if err := g.SetPolicy(ctx, doc); err != nil {
		return fmt.Errorf("replace the pod's default policy in the guest: %w", err)
	}
	return nil
}
