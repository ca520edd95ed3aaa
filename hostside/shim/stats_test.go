package shim

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"

	stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
	agentpolicy "confguest/agent/policy"
	"confguest/hostside/launcher"
)

func TestMetrics(t *testing.T) {
	tests := []struct {
		name string
		in   *agentv1.StatsResponse
		want *stats.Metrics
	}{
		{
			"limited",
			&agentv1.StatsResponse{
				Memory: &agentv1.MemoryStats{UsageBytes: 3 << 20, LimitBytes: 64 << 20, MaxUsageBytes: 4 << 20, InactiveFileBytes: 1 << 20},
				Cpu:    &agentv1.CPUStats{UsageNanos: 5_000_999, UserNanos: 3_000_000, SystemNanos: 2_000_000, ThrottledPeriods: 7, ThrottledNanos: 9_000},
				Pids:   &agentv1.PidsStats{Current: 2, Limit: 100},
			},
			&stats.Metrics{
				Memory: &stats.MemoryStat{Usage: 3 << 20, UsageLimit: 64 << 20, InactiveFile: 1 << 20},
				CPU:    &stats.CPUStat{UsageUsec: 5000, UserUsec: 3000, SystemUsec: 2000, NrThrottled: 7, ThrottledUsec: 9},
				Pids:   &stats.PidsStat{Current: 2, Limit: 100},
			},
		},
		{
			// The agent says 0 for no limit; cgroup v2 metrics say max (containerd's CRI
			// treats anything above 2^62 as unlimited).
			"unlimited",
			&agentv1.StatsResponse{Memory: &agentv1.MemoryStats{UsageBytes: 1}, Cpu: &agentv1.CPUStats{}, Pids: &agentv1.PidsStats{Current: 1}},
			&stats.Metrics{
				Memory: &stats.MemoryStat{Usage: 1, UsageLimit: math.MaxUint64},
				CPU:    &stats.CPUStat{},
				Pids:   &stats.PidsStat{Current: 1},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := metrics(tc.in); !proto.Equal(got, tc.want) {
				t.Errorf("metrics(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
	// containerd's CRI picks the decoder by the type URL.
	a, err := typeurl.MarshalAny(metrics(tests[0].in))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.GetTypeUrl(), "io.containerd.cgroups.v2.Metrics"; got != want {
		t.Errorf("stats type URL = %q, want %q (what containerd's CRI decodes as cgroup v2 metrics)", got, want)
	}
}

// statsAgent answers Stats as the agent does: its gate decides first, and a denial
// reaches the host as PermissionDenied with the policy's reason.
type statsAgent struct {
	gateAgent
	resp *agentv1.StatsResponse
}

func (a *statsAgent) Stats(ctx context.Context, r *agentv1.StatsRequest) (*agentv1.StatsResponse, error) {
	if err := authorize(ctx, a.gate, agentpolicy.MethodStats, r); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	return a.resp, nil
}

// TestServiceStats asks the shim for the stats of a pod's container under a policy that
// allows them and under one that does not, and of the pod's sandbox.
func TestServiceStats(t *testing.T) {
	ctx := context.Background()
	g := testGuestSpec(t)
	id, layer := strings.Repeat("1", 64), strings.Repeat("a1", 32)
	usage := &agentv1.StatsResponse{Memory: &agentv1.MemoryStats{UsageBytes: 2 << 20}, Cpu: &agentv1.CPUStats{}, Pids: &agentv1.PidsStats{Current: 1}}
	for _, tc := range []struct {
		name     string
		agent    policy.AgentRules
		id       string
		wantCode codes.Code
		wantMsg  string
	}{
		{"allowed", policy.AgentRules{Stats: true}, id, codes.OK, ""},
		{"denied", policy.AgentRules{}, id, codes.PermissionDenied, "denied by policy rule agent.stats"},
		{"sandbox", policy.AgentRules{Stats: true}, "pod", codes.NotFound, "the pause container runs nothing in the guest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := encodePolicy(policy.Policy{Version: policy.Version, Agent: tc.agent, Containers: []policy.Container{containerEntry("c", layer, g, true, nil, nil)}})
			if err != nil {
				t.Fatal(err)
			}
			a := &statsAgent{gateAgent: gateAgent{gate: agentpolicy.NewGate(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))}, resp: usage}
			if err := a.gate.Install(ctx, doc); err != nil {
				t.Fatal(err)
			}
			if err := authorize(ctx, a.gate, agentpolicy.MethodCreateContainer, createRequest(t, g, id, layer, nil)); err != nil {
				t.Fatal(err)
			}
			s := &Service{
				pod: &pod{guest: launcher.NewGuest(a), owner: "pod"},
				containers: map[string]*container{
					"pod": {id: "pod", sandbox: true, init: newProcess("pod", "", stdioPaths{})},
					id:    {id: id, init: newProcess(id, "", stdioPaths{})},
				},
			}
			resp, err := s.Stats(ctx, &taskapi.StatsRequest{ID: tc.id})
			if st, _ := status.FromError(err); st.Code() != tc.wantCode || !strings.Contains(st.Message(), tc.wantMsg) {
				t.Fatalf("Stats(%s) = %v, want code %v and %q", tc.id, err, tc.wantCode, tc.wantMsg)
			}
			if err != nil {
				return
			}
			var m stats.Metrics
			if err := typeurl.UnmarshalTo(resp.GetStats(), &m); err != nil {
				t.Fatalf("Stats(%s): %v", tc.id, err)
			}
			if got, want := m.GetMemory().GetUsage(), usage.GetMemory().GetUsageBytes(); got != want {
				t.Errorf("Stats(%s): memory usage %d, want the agent's %d", tc.id, got, want)
			}
		})
	}
}
