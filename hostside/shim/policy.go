package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/launcher"
)

// maxExecArgs bounds the argument count of the exec commands the default policies allow.
const maxExecArgs = 32

// containerEntry is the policy entry, named name, that admits exactly the container
// created with guest spec g on the layer with verity root hash layer (launcher.PolicyEntry:
// its rootfs disk, process, hostname, mounts, paths, sysctls, seccomp); stdin and
// a TTY as the create asked; stdout and stderr readable. It lets the host exec any command
// in the container (up to maxExecArgs arguments) as the container's user, in its working
// directory, with its environment plus any entries, as runc does. It lets the container
// take its emptyDirs and the host files of vols at StandardVolumeDestinations (defaultVolumes).
// The host may change its memory and CPU limits (UpdateContainer), as the kubelet does
// when a pod is resized: they take resources from this container only, within the VM.
func containerEntry(name, layer string, g *specs.Spec, stdin bool, pod []specs.LinuxNamespaceType, vols []*agentv1.Volume) policy.Container {
	c := launcher.PolicyEntry(name, layer, g)
	c.Stdin = stdin
	c.Volumes = defaultVolumes(vols)
	c.UpdateResources = []string{"memory", "cpu"}
	for _, t := range pod {
		c.PodNamespaces = append(c.PodNamespaces, string(t))
	}
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
		Containers: []policy.Container{containerEntry("container", layer, g, stdin, nil, nil)},
	})
}

// podBasePolicy is the policy a CRI pod that names none (no AnnotationPolicy) boots with:
// no containers; Stats, Shutdown, replacing the policy and the pod's network interface
// (ConfigureNetwork) allowed. Its SHA-256 is the
// HOST_DATA of such a pod under SEV-SNP. deploy/pod-default-policy.json holds the same
// bytes, and the README prints its SHA-256.
//
// As each container of the pod is created, the shim replaces the policy with podPolicyFor
// the pod's containers so far: the host decides which containers the pod runs, and each
// is then held to what it was created with.
const podBasePolicy = `{
  "version": 1,
  "agent": {"stats": true, "shutdown": true, "replace_policy": true, "pod_network": true},
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

// podDefault is the state of a pod under the default pod policy: its entries, in
// creation order, each with the containers created under it.
//
// The agent admits a container under the first entry that matches it, so a container
// created exactly like an earlier one (critest's "three created containers", the replicas
// of one image and command) is admitted under the earlier container's entry. Such a
// container therefore shares that entry instead of adding its own, and an entry is
// dropped only with the last container that may have been admitted under it: dropping it
// with the first would leave the others unadmitted (every call on them but SIGKILL and
// delete denied).
type podDefault struct {
	entries []podEntry
}

// podEntry is one entry of the pod policy and the IDs of the containers created under it.
type podEntry struct {
	policy.Container
	ids []string
}

// admit installs the pod policy that admits entry, the entry of container id; the
// container counts once commit is called (after it was created). Called with s.mu held.
func (d *podDefault) admit(ctx context.Context, g *launcher.Guest, id string, entry policy.Container) (commit func(), err error) {
	entries, changed := withContainer(d.entries, id, entry)
	if changed {
		if err := d.install(ctx, g, entries); err != nil {
			return nil, fmt.Errorf("admit container %s: %w", id, err)
		}
	}
	return func() { d.entries = entries }, nil
}

// withContainer returns entries with container id added: to an entry that reads as entry
// apart from its name and stdin (given stdin if entry has it), else as a new entry.
// changed says whether the policy differs from entries'.
func withContainer(entries []podEntry, id string, entry policy.Container) (_ []podEntry, changed bool) {
	out := slices.Clone(entries)
	for i := range out {
		if !sameEntry(out[i].Container, entry) {
			continue
		}
		e := out[i]
		e.ids = append(slices.Clone(e.ids), id)
		if entry.Stdin && !e.Stdin {
			e.Stdin, changed = true, true
		}
		out[i] = e
		return out, changed
	}
	return append(out, podEntry{Container: entry, ids: []string{id}}), true
}

// sameEntry reports whether a and b admit the same containers apart from stdin: a
// container that one admits matches the other too, so the agent admits it under
// whichever comes first.
func sameEntry(a, b policy.Container) bool {
	a.Name, b.Name, a.Stdin, b.Stdin = "", "", false, false
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// revert reinstalls the pod policy of the committed entries, after a create that failed.
func (d *podDefault) revert(ctx context.Context, g *launcher.Guest) {
	if err := d.install(ctx, g, d.entries); err != nil {
		log.G(ctx).WithError(err).Warn("restore the pod's default policy after a failed create")
	}
}

// forget removes a deleted container from its entry and installs the pod policy without
// the entry once no container of it is left.
func (d *podDefault) forget(ctx context.Context, g *launcher.Guest, id string) {
	i := slices.IndexFunc(d.entries, func(e podEntry) bool { return slices.Contains(e.ids, id) })
	if i < 0 {
		return
	}
	entries := slices.Clone(d.entries)
	entries[i].ids = slices.DeleteFunc(slices.Clone(entries[i].ids), func(x string) bool { return x == id })
	d.entries = entries
	if len(entries[i].ids) > 0 {
		return
	}
	d.entries = slices.Delete(entries, i, i+1)
	if err := d.install(ctx, g, d.entries); err != nil {
		log.G(ctx).WithError(err).WithField("id", id).Warn("drop a deleted container from the pod's default policy")
	}
}

func (d *podDefault) install(ctx context.Context, g *launcher.Guest, entries []podEntry) error {
	cs := make([]policy.Container, len(entries))
	for i, e := range entries {
		cs[i] = e.Container
	}
	doc, err := podPolicyFor(cs)
	if err != nil {
		return err
	}
	if err := g.SetPolicy(ctx, doc); err != nil {
		return fmt.Errorf("replace the pod's default policy in the guest: %w", err)
	}
	return nil
}
