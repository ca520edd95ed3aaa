package server

import (
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

// TestUpdateContainer changes a running container's memory and pids limits through the API
// and reads them back from its cgroup (Stats); values out of range are refused naming the
// field, and the limits stay as they were.
func TestUpdateContainer(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	const id = "update-1"
	var s specs.Spec
	if err := json.Unmarshal(spec(t, false, "sleep", "60"), &s); err != nil {
		t.Fatal(err)
	}
	limit, pids := int64(64<<20), int64(50)
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pids}
	b, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	ta.createStarted(t, id, b)
	limits := func() (uint64, uint64) {
		t.Helper()
		st, err := ta.client.Stats(ctx(t), &agentv1.StatsRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("Stats = %v", err)
		}
		return st.GetMemory().GetLimitBytes(), st.GetPids().GetLimit()
	}
	if m, p := limits(); m != 64<<20 || p != 50 {
		t.Fatalf("limits after create = memory %d, pids %d, want %d, 50", m, p, 64<<20)
	}

	for _, tc := range []struct {
		name      string
		req       *agentv1.UpdateContainerRequest
		wantCode  codes.Code
		wantField string
		memory    uint64 // limits afterwards (0: unlimited)
		pids      uint64
	}{
		{"memory and pids", &agentv1.UpdateContainerRequest{Memory: &agentv1.MemoryResources{Limit: 32 << 20}, Pids: &agentv1.PidsResources{Limit: 20}}, codes.OK, "", 32 << 20, 20},
		{"cpu only keeps memory", &agentv1.UpdateContainerRequest{Cpu: &agentv1.CPUResources{Shares: 512, Quota: 50000, Period: 100000}}, codes.OK, "", 32 << 20, 20},
		{"negative memory", &agentv1.UpdateContainerRequest{Memory: &agentv1.MemoryResources{Limit: -5}}, codes.InvalidArgument, "memory.limit", 32 << 20, 20},
		{"memory of one byte", &agentv1.UpdateContainerRequest{Memory: &agentv1.MemoryResources{Limit: 1}}, codes.InvalidArgument, "memory.limit", 32 << 20, 20},
		{"absurd memory", &agentv1.UpdateContainerRequest{Memory: &agentv1.MemoryResources{Limit: 1 << 62}}, codes.InvalidArgument, "memory.limit", 32 << 20, 20},
		{"shares of one", &agentv1.UpdateContainerRequest{Cpu: &agentv1.CPUResources{Shares: 1}}, codes.InvalidArgument, "cpu.shares", 32 << 20, 20},
		{"period of a minute", &agentv1.UpdateContainerRequest{Cpu: &agentv1.CPUResources{Period: 60_000_000}}, codes.InvalidArgument, "cpu.period", 32 << 20, 20},
		{"negative quota", &agentv1.UpdateContainerRequest{Cpu: &agentv1.CPUResources{Quota: -2}}, codes.InvalidArgument, "cpu.quota", 32 << 20, 20},
		{"cpuset of a path", &agentv1.UpdateContainerRequest{Cpu: &agentv1.CPUResources{Cpus: "../../cgroup.procs"}}, codes.InvalidArgument, "cpu.cpus", 32 << 20, 20},
		{"descending cpuset", &agentv1.UpdateContainerRequest{Cpu: &agentv1.CPUResources{Mems: "3-1"}}, codes.InvalidArgument, "cpu.mems", 32 << 20, 20},
		{"negative pids", &agentv1.UpdateContainerRequest{Pids: &agentv1.PidsResources{Limit: -7}}, codes.InvalidArgument, "pids.limit", 32 << 20, 20},
		{"lift both", &agentv1.UpdateContainerRequest{Memory: &agentv1.MemoryResources{Limit: -1, Swap: -1}, Pids: &agentv1.PidsResources{Limit: -1}}, codes.OK, "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.ContainerId = id
			_, err := ta.client.UpdateContainer(ctx(t), tc.req)
			if code(err) != tc.wantCode || (tc.wantField != "" && !strings.Contains(err.Error(), tc.wantField+": ")) {
				t.Fatalf("UpdateContainer(%v) = %v, want %v naming %q", tc.req, err, tc.wantCode, tc.wantField)
			}
			if m, p := limits(); m != tc.memory || p != tc.pids {
				t.Errorf("limits after UpdateContainer(%v) = memory %d, pids %d, want %d, %d", tc.req, m, p, tc.memory, tc.pids)
			}
		})
	}
	if _, err := ta.client.UpdateContainer(ctx(t), &agentv1.UpdateContainerRequest{ContainerId: "none", Pids: &agentv1.PidsResources{Limit: 5}}); code(err) != codes.NotFound {
		t.Errorf("UpdateContainer(none) = %v, want NotFound", err)
	}
}
