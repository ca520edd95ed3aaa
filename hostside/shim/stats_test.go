package shim

import (
	"math"
	"testing"

	stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"

	agentv1 "confguest/agent/api/v1"
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
				Memory: &agentv1.MemoryStats{UsageBytes: 3 << 20, LimitBytes: 64 << 20, MaxUsageBytes: 4 << 20},
				Cpu:    &agentv1.CPUStats{UsageNanos: 5_000_999, UserNanos: 3_000_000, SystemNanos: 2_000_000, ThrottledPeriods: 7, ThrottledNanos: 9_000},
				Pids:   &agentv1.PidsStats{Current: 2, Limit: 100},
			},
			&stats.Metrics{
				Memory: &stats.MemoryStat{Usage: 3 << 20, UsageLimit: 64 << 20},
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
