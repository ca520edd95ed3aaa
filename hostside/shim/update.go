package shim

import (
	"context"
	"encoding/json"
	"fmt"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	agentv1 "confguest/agent/api/v1"
)

// Update changes a container's memory, CPU and pids limits in the guest (containerd's
// UpdateContainerResources, crictl update). The pod's policy must list each group in the
// container's update_resources (the default pod policy lists memory and cpu); a denial
// comes back as PermissionDenied naming the rule. A limit above the VM's own size is
// accepted and takes effect only up to it: the VM is not resized.
func (s *Service) Update(ctx context.Context, r *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	if err := s.update(ctx, r); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) update(ctx context.Context, r *taskapi.UpdateTaskRequest) error {
	c, _, err := s.lookup(r.ID, "")
	if err != nil {
		return err
	}
	if c.sandbox {
		// containerd updates the sandbox's resources with the pod's; the pause
		// container runs nothing in the guest, and the VM keeps its size.
		return nil
	}
	if r.Resources == nil {
		return fmt.Errorf("update resources of %s: no resources given: %w", r.ID, errInvalid)
	}
	// containerd encodes the OCI LinuxResources as JSON, as it does the exec process.
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return fmt.Errorf("update resources of %s: decode linux resources: %w: %w", r.ID, err, errInvalid)
	}
	req, err := updateRequest(r.ID, &res)
	if err != nil {
		return err
	}
	g, err := s.guest()
	if err != nil {
		return err
	}
	return g.Update(ctx, req)
}

// updateRequest is the agent's UpdateContainer request for the OCI resources res of
// container id: memory, CPU and pids limits, the ones the guest spec carries
// (guestSpec). Device rules, hugepage limits and unified cgroup files stay out as at
// create; a memory or CPU setting the agent cannot change is refused naming it.
func updateRequest(id string, res *specs.LinuxResources) (*agentv1.UpdateContainerRequest, error) {
	req := &agentv1.UpdateContainerRequest{ContainerId: id}
	unsupported := func(field string) error {
		return fmt.Errorf("update resources of %s: linux.resources.%s cannot be changed in the guest: leave it out: %w", id, field, errInvalid)
	}
	if m := res.Memory; m != nil {
		switch {
		case m.Kernel != nil:
			return nil, unsupported("memory.kernel")
		case m.KernelTCP != nil:
			return nil, unsupported("memory.kernelTCP")
		case m.Swappiness != nil:
			return nil, unsupported("memory.swappiness")
		case m.DisableOOMKiller != nil:
			return nil, unsupported("memory.disableOOMKiller")
		}
		req.Memory = &agentv1.MemoryResources{Limit: deref(m.Limit), Reservation: deref(m.Reservation), Swap: deref(m.Swap)}
	}
	if c := res.CPU; c != nil {
		switch {
		case c.RealtimeRuntime != nil || c.RealtimePeriod != nil:
			return nil, unsupported("cpu.realtimeRuntime")
		case c.Burst != nil:
			return nil, unsupported("cpu.burst")
		case c.Idle != nil:
			return nil, unsupported("cpu.idle")
		}
		req.Cpu = &agentv1.CPUResources{Shares: deref(c.Shares), Quota: deref(c.Quota), Period: deref(c.Period), Cpus: c.Cpus, Mems: c.Mems}
	}
	if p := res.Pids; p != nil && p.Limit != nil {
		req.Pids = &agentv1.PidsResources{Limit: *p.Limit}
	}
	return req, nil
}

func deref[T int64 | uint64](p *T) T {
	if p == nil {
		return 0
	}
	return *p
}
