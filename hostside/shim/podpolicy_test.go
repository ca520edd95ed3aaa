package shim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
	"confguest/agent/authz"
	agentpolicy "confguest/agent/policy"
	"confguest/hostside/launcher"
)

// gateAgent is an agent whose SetPolicy is the agent's own gate, authorized and installed
// as the agent's server does it; the test asks the gate about the other calls directly.
type gateAgent struct {
	agentv1.AgentClient // nil: the pod policy code makes no other call
	gate                *agentpolicy.Gate
	installed           [][]byte
}

func (a *gateAgent) SetPolicy(ctx context.Context, r *agentv1.SetPolicyRequest) (*agentv1.SetPolicyResponse, error) {
	if err := authorize(ctx, a.gate, agentpolicy.MethodSetPolicy, r); err != nil {
		return nil, err
	}
	if err := a.gate.Install(ctx, r.GetPolicy()); err != nil {
		return nil, err
	}
	a.installed = append(a.installed, r.GetPolicy())
	return &agentv1.SetPolicyResponse{Sha256: policy.HashHex(r.GetPolicy())}, nil
}

// hostData is the HOST_DATA of an SEV-SNP launch.
type hostData [32]byte

func (h hostData) HostData(context.Context) ([32]byte, error) { return h, nil }

// TestPodDefaultPolicy runs a pod's default policy against the agent's gate: the base
// binds to HOST_DATA and admits nothing; each replacement admits exactly the containers
// created so far, as created; earlier containers stay reachable; a failed create and a
// deleted container leave no entry.
func TestPodDefaultPolicy(t *testing.T) {
	ctx := context.Background()
	base := []byte(podBasePolicy)
	a := &gateAgent{gate: agentpolicy.NewGate(hostData(policy.Hash(base)), slog.New(slog.NewTextHandler(io.Discard, nil)))}
	guest := launcher.NewGuest(a)
	if err := guest.SetPolicy(ctx, base); err != nil {
		t.Fatalf("SetPolicy(base) under HOST_DATA = SHA-256(base) = %v, want installed", err)
	}
	g := testGuestSpec(t)
	// CRI container IDs are 64 hex digits; each container has its own layer here.
	id1, id2, id3 := strings.Repeat("1", 64), strings.Repeat("2", 64), strings.Repeat("3", 64)
	layers := map[string]string{id1: strings.Repeat("a1", 32), id2: strings.Repeat("b2", 32), id3: strings.Repeat("c3", 32)}
	d := &podDefault{}

	allow := func(what, method string, req any) {
		t.Helper()
		if err := authorize(ctx, a.gate, method, req); err != nil {
			t.Errorf("%s = %v, want allowed", what, err)
		}
	}
	deny := func(what, method string, req any) {
		t.Helper()
		if err := authorize(ctx, a.gate, method, req); !errors.Is(err, authz.ErrDenied) {
			t.Errorf("%s = %v, want denied", what, err)
		}
	}
	// installed checks the last installed document: the base's agent rules and one entry
	// per id, in order, each exactly containerEntry of that container.
	installed := func(ids ...string) {
		t.Helper()
		doc := a.installed[len(a.installed)-1]
		p, err := policy.Parse(doc)
		if err != nil {
			t.Fatalf("the pod policy does not parse: %v\n%s", err, doc)
		}
		if want := (policy.AgentRules{Stats: true, Shutdown: true, ReplacePolicy: true, PodNetwork: true}); p.Agent != want {
			t.Errorf("pod policy agent rules = %+v, want %+v", p.Agent, want)
		}
		var names []string
		for _, c := range p.Containers {
			names = append(names, c.Name)
		}
		if !slices.Equal(names, ids) {
			t.Fatalf("pod policy entries = %q, want %q", names, ids)
		}
		for i, id := range ids {
			got, _ := json.Marshal(p.Containers[i])
			want, _ := json.Marshal(containerEntry(id, layers[id], g, true, nil, nil))
			if string(got) != string(want) {
				t.Errorf("pod policy entry %s = %s, want %s", id, got, want)
			}
		}
		if h, _ := a.gate.Installed(); h != policy.HashHex(doc) {
			t.Errorf("the gate has policy %s installed, want the pod policy %s", h, policy.HashHex(doc))
		}
	}
	create := func(id string) {
		t.Helper()
		commit, err := d.admit(ctx, guest, id, containerEntry(id, layers[id], g, true, nil, nil))
		if err != nil {
			t.Fatalf("admit %s: %v", id, err)
		}
		allow("CreateContainer "+id+" as admitted", agentpolicy.MethodCreateContainer, createRequest(t, g, id, layers[id], nil))
		commit()
	}
	start := func(id string) *agentv1.StartContainerRequest { return &agentv1.StartContainerRequest{ContainerId: id} }

	deny("CreateContainer under the base policy", agentpolicy.MethodCreateContainer, createRequest(t, g, id1, layers[id1], nil))
	create(id1)
	installed(id1)
	deny("CreateContainer with other args", agentpolicy.MethodCreateContainer, createRequest(t, g, id2, layers[id1], func(s *specs.Spec) {
		s.Process.Args = []string{"sh"}
	}))

	create(id2)
	installed(id1, id2)
	allow("StartContainer of the first container after a replacement", agentpolicy.MethodStartContainer, start(id1))
	allow("Stats", agentpolicy.MethodStats, &agentv1.StatsRequest{ContainerId: id2})

	// A create that fails in the guest: the shim reverts to the committed containers.
	if _, err := d.admit(ctx, guest, id3, containerEntry(id3, layers[id3], g, true, nil, nil)); err != nil {
		t.Fatal(err)
	}
	d.revert(ctx, guest)
	installed(id1, id2)
	deny("CreateContainer after its failed create was reverted", agentpolicy.MethodCreateContainer, createRequest(t, g, id3, layers[id3], nil))

	// Deleting the first container drops its entry; the second is untouched.
	d.forget(ctx, guest, id1)
	installed(id2)
	deny("StartContainer of a deleted container", agentpolicy.MethodStartContainer, start(id1))
	deny("CreateContainer of a deleted container again", agentpolicy.MethodCreateContainer, createRequest(t, g, id1, layers[id1], nil))
	allow("StartContainer of the remaining container", agentpolicy.MethodStartContainer, start(id2))

	// Containers created exactly like an earlier one (same layer and spec) are admitted
	// under the earlier one's entry, the first that matches: they share it, and it stays
	// until the last of them is deleted.
	id4, id5, id6 := strings.Repeat("4", 64), strings.Repeat("5", 64), strings.Repeat("6", 64)
	for _, id := range []string{id4, id5, id6} {
		layers[id] = strings.Repeat("d4", 32)
	}
	create(id4)
	create(id5)
	create(id6)
	installed(id2, id4)
	term := func(id string) *agentv1.SignalProcessRequest {
		return &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: id}, Signal: 15}
	}
	d.forget(ctx, guest, id4)
	installed(id2, id4)
	allow("SIGTERM to a container created like a deleted one", agentpolicy.MethodSignalProcess, term(id5))
	d.forget(ctx, guest, id5)
	allow("SIGTERM to the last container of a shared entry", agentpolicy.MethodSignalProcess, term(id6))
	d.forget(ctx, guest, id6)
	installed(id2)
	deny("SIGTERM to a deleted container", agentpolicy.MethodSignalProcess, term(id6))
}

// TestPodBasePolicyDocumented checks the base policy against what the docs publish:
// deploy/pod-default-policy.json holds its exact bytes, and the README and deploy/README.md
// print its SHA-256 (the HOST_DATA of an SEV-SNP pod under it).
func TestPodBasePolicyDocumented(t *testing.T) {
	p, err := policy.Parse([]byte(podBasePolicy))
	if err != nil {
		t.Fatalf("the pod base policy does not parse: %v", err)
	}
	if want := (policy.AgentRules{Stats: true, Shutdown: true, ReplacePolicy: true, PodNetwork: true}); p.Agent != want || len(p.Containers) != 0 {
		t.Errorf("pod base policy = agent %+v, %d containers; want %+v and none", p.Agent, len(p.Containers), want)
	}
	root := filepath.Join("..", "..")
	file, err := os.ReadFile(filepath.Join(root, "deploy", "pod-default-policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != podBasePolicy {
		t.Errorf("deploy/pod-default-policy.json differs from podBasePolicy:\n%s\nwant:\n%s", file, podBasePolicy)
	}
	hash := policy.HashHex([]byte(podBasePolicy))
	for _, doc := range []string{"README.md", filepath.Join("deploy", "README.md")} {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), hash) {
			t.Errorf("%s does not print the pod base policy's SHA-256 %s", doc, hash)
		}
	}
}
