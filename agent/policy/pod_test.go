package policy

import (
	"context"
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	hostv1 "confguest/agent/api/v1"
	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/api/v1/wiretest"
	"confguest/agent/authz"
)

// inPod is createWeb(id, mod) joining the pod namespaces types.
func inPod(t *testing.T, id string, mod func(*specs.Spec), types ...specs.LinuxNamespaceType) *agentv1.CreateContainerRequest {
	t.Helper()
	r := createWeb(id, mod)
	host, err := hostv1.NewPodNamespaces(types)
	if err != nil {
		t.Fatal(err)
	}
	pod, err := wiretest.Convert(host)
	if err != nil {
		t.Fatal(err)
	}
	r.PodNamespaces = pod.(*agentv1.PodNamespaces)
	return r
}

// TestPodNamespacesAuthorize: a container joins exactly the pod namespaces its entry names
// (pod_namespaces), never one more or one fewer, never by a path the host sends, and an
// entry without pod_namespaces admits no container that joins one.
func TestPodNamespacesAuthorize(t *testing.T) {
	const (
		net = specs.NetworkNamespace
		ipc = specs.IPCNamespace
		uts = specs.UTSNamespace
		pid = specs.PIDNamespace
	)
	pod := []string{`"name": "web",`, `"name": "web", "pod_namespaces": ["uts", "network", "ipc"],`}
	for _, tc := range []struct {
		name     string
		edits    []string // of testdata/web.json
		req      func(t *testing.T) any
		wantRule string // "" means allowed
	}{
		{"the entry's set, in any order", pod, func(t *testing.T) any { return inPod(t, "b", nil, ipc, net, uts) }, ""},
		{"one more", pod, func(t *testing.T) any { return inPod(t, "b", nil, net, ipc, uts, pid) }, "containers[web].pod_namespaces: pod_namespaces: the policy does not let this container join the pod's pid namespace"},
		{"one fewer", pod, func(t *testing.T) any { return inPod(t, "b", nil, net, uts) }, "containers[web].pod_namespaces: pod_namespaces: the policy requires this container to join the pod's ipc namespace"},
		{"none where the entry names some", pod, func(t *testing.T) any { return createWeb("b", nil) }, "the policy requires this container to join the pod's network namespace"},
		{"some where the entry names none", nil, func(t *testing.T) any { return inPod(t, "b", nil, net) }, "containers[web].pod_namespaces"},
		{"the pid namespace alone", nil, func(t *testing.T) any { return inPod(t, "b", nil, pid) }, "join the pod's pid namespace"},
		{"with a path the host sends", pod, func(t *testing.T) any {
			return inPod(t, "b", func(s *specs.Spec) { s.Linux.Namespaces[1].Path = "/run/confguest/pod/net" }, net, ipc, uts)
		}, "spec.linux.namespaces[1].path"},
		{"a pod namespace the spec does not list", []string{`"name": "web",`, `"name": "web", "guest_network": true, "pod_namespaces": ["network"],`}, func(t *testing.T) any {
			return inPod(t, "b", func(s *specs.Spec) { s.Linux.Namespaces = append(s.Linux.Namespaces[:1], s.Linux.Namespaces[2:]...) }, net)
		}, "the pod's network namespace is joined but spec.linux.namespaces lists no network namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := readTestdata(t, "web.json")
			for i := 0; i+1 < len(tc.edits); i += 2 {
				doc = edit(t, doc, tc.edits[i], tc.edits[i+1])
			}
			checkCreate(t, doc, tc.req(t), tc.wantRule)
		})
	}
}

// TestPodNamespacesParse: pod_namespaces lists namespace types a pod shares, once each.
func TestPodNamespacesParse(t *testing.T) {
	for _, tc := range []struct {
		value, wantErr string
	}{
		{`["network", "ipc", "uts", "pid"]`, ""},
		{`[]`, ""},
		{`["mount"]`, `containers[web].pod_namespaces[0] "mount": a pod shares only`},
		{`["user"]`, `pod_namespaces[0] "user"`},
		{`["ipc", "ipc"]`, `pod_namespaces[1] "ipc": listed twice`},
		{`["/proc/1/ns/net"]`, `pod_namespaces[0]`},
	} {
		doc := edit(t, readTestdata(t, "web.json"), `"name": "web",`, `"name": "web", "pod_namespaces": `+tc.value+`,`)
		_, err := Parse(doc)
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("Parse(pod_namespaces %s) = %v, want %q", tc.value, err, tc.wantErr)
		}
	}
}

// checkCreate installs policy doc and authorizes CreateContainer req: allowed when
// wantRule is "", else a denial naming it.
func checkCreate(t *testing.T, doc []byte, req any, wantRule string) {
	t.Helper()
	g := NewGate(nil, discardLogger())
	if err := g.Install(context.Background(), doc); err != nil {
		t.Fatal(err)
	}
	err := authorize(context.Background(), g, MethodCreateContainer, req)
	switch {
	case wantRule == "" && err != nil:
		t.Errorf("CreateContainer = %v, want allowed", err)
	case wantRule != "" && (!errors.Is(err, authz.ErrDenied) || !strings.Contains(err.Error(), wantRule)):
		t.Errorf("CreateContainer = %v, want a denial naming %q", err, wantRule)
	}
}
