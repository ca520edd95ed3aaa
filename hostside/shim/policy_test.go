package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/api/v1/wiretest"
	"confguest/agent/authz"
	agentpolicy "confguest/agent/policy"
)

// testGuestSpec is the guest spec of a small container as the shim creates it.
func testGuestSpec(t *testing.T) *specs.Spec {
	t.Helper()
	bundle := &specs.Spec{
		Hostname: "c1",
		Process: &specs.Process{
			Args: []string{"sh", "-c", "echo hi"}, Env: []string{"PATH=/bin", "SECRET=x"}, Cwd: "/",
			Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN", "CAP_KILL"}, Effective: []string{"CAP_KILL"}},
		},
		Root: &specs.Root{Path: "rootfs"},
	}
	g, err := guestSpec(bundle, false)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// createRequest is the agent's CreateContainer of container id from guest spec g (changed
// by mutate, if any) on the layer with root hash layer, with stdin.
func createRequest(t *testing.T, g *specs.Spec, id, layer string, mutate func(*specs.Spec)) *agentv1.CreateContainerRequest {
	t.Helper()
	s := *g
	proc := *g.Process
	s.Process = &proc
	if mutate != nil {
		mutate(&s)
	}
	sj, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	return &agentv1.CreateContainerRequest{ContainerId: id, SpecJson: sj, Stdio: &agentv1.StdioOptions{Stdin: true},
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{Serial: "ctr0",
			Verity: &agentv1.Verity{RootHash: layer, DataBlocks: 1, HashOffset: 4096}}}}}
}

// TestDefaultPolicy checks the default policy with the agent's own evaluator: it admits
// the container as the shim creates it, and nothing else.
func TestDefaultPolicy(t *testing.T) {
	layer := strings.Repeat("ab", 32)
	g := testGuestSpec(t)
	doc, err := defaultPolicy(layer, g, true)
	if err != nil {
		t.Fatal(err)
	}
	p, err := agentpolicy.Parse(doc)
	if err != nil {
		t.Fatalf("the agent does not parse the default policy: %v", err)
	}
	ev := agentpolicy.NewEvaluator(p)
	ctx := context.Background()
	create := func(id, layer string, mutate func(*specs.Spec)) *agentv1.CreateContainerRequest {
		return createRequest(t, g, id, layer, mutate)
	}
	execs := 0
	execReq := func(args ...string) *agentv1.ExecProcessRequest {
		execs++
		pj, _ := json.Marshal(&specs.Process{Args: args, Env: g.Process.Env, Cwd: "/", Capabilities: g.Process.Capabilities})
		return &agentv1.ExecProcessRequest{ContainerId: "c1", ExecId: fmt.Sprintf("e%d", execs), ProcessJson: pj, Stdio: &agentv1.StdioOptions{Stdin: true}}
	}
	// c1 is admitted first; the later calls are on it.
	if err := authorize(ctx, ev, agentpolicy.MethodCreateContainer, create("c1", layer, nil)); err != nil {
		t.Fatalf("CreateContainer of the container the policy was made for: %v", err)
	}
	for _, tc := range []struct {
		name   string
		method string
		req    any
		allow  bool
	}{
		{"another layer", agentpolicy.MethodCreateContainer, create("c2", strings.Repeat("cd", 32), nil), false},
		{"other args", agentpolicy.MethodCreateContainer, create("c3", layer, func(s *specs.Spec) { s.Process.Args = []string{"sh"} }), false},
		{"extra env", agentpolicy.MethodCreateContainer, create("c4", layer, func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "LD_PRELOAD=/x") }), false},
		{"more capabilities", agentpolicy.MethodCreateContainer, create("c5", layer, func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_SYS_ADMIN"}}
		}), false},
		{"start", agentpolicy.MethodStartContainer, &agentv1.StartContainerRequest{ContainerId: "c1"}, true},
		{"stdin", agentpolicy.MethodWriteStdin, &agentv1.WriteStdinRequest{Process: &agentv1.ProcessRef{ContainerId: "c1"}}, true},
		{"stdout", agentpolicy.MethodReadOutput, &agentv1.ReadOutputRequest{Process: &agentv1.ProcessRef{ContainerId: "c1"}, Stream: agentv1.OutputStream_OUTPUT_STREAM_STDOUT}, true},
		{"stderr", agentpolicy.MethodReadOutput, &agentv1.ReadOutputRequest{Process: &agentv1.ProcessRef{ContainerId: "c1"}, Stream: agentv1.OutputStream_OUTPUT_STREAM_STDERR}, true},
		{"exec one arg", agentpolicy.MethodExecProcess, execReq("cat"), true},
		{"exec with newline", agentpolicy.MethodExecProcess, execReq("sh", "-c", "echo a\necho b"), true},
		{"exec too many args", agentpolicy.MethodExecProcess, execReq(strings.Fields(strings.Repeat("x ", maxExecArgs+1))...), false},
		{"signal", agentpolicy.MethodSignalProcess, &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: "c1"}, Signal: 15}, true},
		{"delete", agentpolicy.MethodDeleteContainer, &agentv1.DeleteContainerRequest{ContainerId: "c1"}, true},
		{"shutdown", agentpolicy.MethodShutdown, &agentv1.ShutdownRequest{}, true},
		{"stats", agentpolicy.MethodStats, &agentv1.StatsRequest{ContainerId: "c1"}, false},
		{"replace policy", agentpolicy.MethodSetPolicy, &agentv1.SetPolicyRequest{Policy: doc}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := authorize(ctx, ev, tc.method, tc.req)
			if tc.allow && err != nil {
				t.Errorf("%s denied: %v; the default policy must allow it", tc.method, err)
			}
			if !tc.allow && (err == nil || !errors.Is(err, authz.ErrDenied)) {
				t.Errorf("%s = %v; the default policy must deny it", tc.method, err)
			}
		})
	}
}

// authorize decides on req as the agent does.
var authorize = wiretest.Authorize
