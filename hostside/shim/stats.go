package shim

import (
	"context"
	"fmt"
	"math"

	stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/protobuf"
	"github.com/containerd/typeurl/v2"

	agentv1 "confguest/agent/api/v1"
)

// Stats reports a container's cgroup counters from the guest as cgroup v2 metrics, the
// type containerd's CRI reads for crictl stats and the kubelet. The pod's policy must allow
// it (agent.stats); a denial comes back as PermissionDenied with the policy's reason.
func (s *Service) Stats(ctx context.Context, r *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	resp, err := s.stats(ctx, r.ID)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *Service) stats(ctx context.Context, id string) (*taskapi.StatsResponse, error) {
	c, _, err := s.lookup(id, "")
	if err != nil {
		return nil, err
	}
	if c.sandbox {
		// As runc's shim says for a container without a cgroup; containerd skips it.
		return nil, fmt.Errorf("stats of pod sandbox %s: the pause container runs nothing in the guest: ask for its containers' stats: %w", id, errNotFound)
	}
	g, err := s.guest()
	if err != nil {
		return nil, err
	}
	st, err := g.Stats(ctx, id)
	if err != nil {
		return nil, err
	}
	data, err := typeurl.MarshalAny(metrics(st))
	if err != nil {
		return nil, fmt.Errorf("encode stats of container %s: %w", id, err)
	}
	return &taskapi.StatsResponse{Stats: protobuf.FromAny(data)}, nil
}

// metrics converts the agent's counters to cgroup v2 metrics. The agent reads memory
// usage, limit, peak and inactive file pages (containerd's CRI reports usage less them as
// the working set the kubelet evicts by), CPU time and throttling, and pids; the number
// of CPU periods has no field here and is left out. An unlimited memory limit is
// math.MaxUint64, as cgroup v2 reads "max"; an unlimited pids limit stays 0.
func metrics(st *agentv1.StatsResponse) *stats.Metrics {
	m, c, p := st.GetMemory(), st.GetCpu(), st.GetPids()
	limit := m.GetLimitBytes()
	if limit == 0 {
		limit = math.MaxUint64
	}
	return &stats.Metrics{
		Memory: &stats.MemoryStat{Usage: m.GetUsageBytes(), UsageLimit: limit, InactiveFile: m.GetInactiveFileBytes()},
		CPU: &stats.CPUStat{
			UsageUsec: c.GetUsageNanos() / 1000, UserUsec: c.GetUserNanos() / 1000, SystemUsec: c.GetSystemNanos() / 1000,
			NrThrottled: c.GetThrottledPeriods(), ThrottledUsec: c.GetThrottledNanos() / 1000,
		},
		Pids: &stats.PidsStat{Current: p.GetCurrent(), Limit: p.GetLimit()},
	}
}
