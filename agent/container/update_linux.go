package container

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/libct"
)

// Ranges of the limits UpdateContainer takes (README: resource updates).
// A value outside them is refused naming the field: none is a limit the
// kernel would apply as the host meant it.
const (
	// MinMemoryLimit is the least memory limit (and reservation, and
	// memory+swap) an update may set: below it the container's processes
	// are OOM-killed at once.
	MinMemoryLimit = 1 << 20
	// MaxMemoryLimit is the largest (1 PiB): anything above is a mistake,
	// not a limit.
	MaxMemoryLimit = 1 << 50
	// MinCPUShares and MaxCPUShares bound cpu.shares, the range the OCI
	// spec's shares convert to cpu.weight from.
	MinCPUShares = 2
	MaxCPUShares = 262144
	// MinCPUPeriod and MaxCPUPeriod bound cpu.period (µs), as the kernel's
	// cpu.max does; a quota is at least MinCPUPeriod and at most
	// MaxCPUQuota.
	MinCPUPeriod = 1000
	MaxCPUPeriod = 1000000
	MaxCPUQuota  = 1 << 40
	// MaxCPUSetIndex bounds the CPU and memory node numbers of a cpuset
	// list, and MaxCPUSetLen its length.
	MaxCPUSetIndex = 4095
	MaxCPUSetLen   = 256
	// MaxPidsLimit is the kernel's PID_MAX_LIMIT.
	MaxPidsLimit = 1 << 22
)

// CheckUpdate checks the limits of an UpdateContainer request: every
// field is zero (unchanged), -1 where it lifts a limit, or within its
// range. The error names the first field that is not.
func CheckUpdate(r *agentv1.UpdateContainerRequest) error {
	if m := r.GetMemory(); m != nil {
		for _, f := range []struct {
			name string
			v    int64
		}{{"memory.limit", m.GetLimit()}, {"memory.reservation", m.GetReservation()}, {"memory.swap", m.GetSwap()}} {
			if f.v != 0 && f.v != -1 && (f.v < MinMemoryLimit || f.v > MaxMemoryLimit) {
				return fieldErr(f.name, "%d bytes: want -1 (unlimited) or %d to %d", f.v, int64(MinMemoryLimit), int64(MaxMemoryLimit))
			}
		}
	}
	if c := r.GetCpu(); c != nil {
		if s := c.GetShares(); s != 0 && (s < MinCPUShares || s > MaxCPUShares) {
			return fieldErr("cpu.shares", "%d: want %d to %d", s, MinCPUShares, MaxCPUShares)
		}
		if q := c.GetQuota(); q != 0 && q != -1 && (q < MinCPUPeriod || q > MaxCPUQuota) {
			return fieldErr("cpu.quota", "%d µs: want -1 (unlimited) or %d to %d", q, MinCPUPeriod, int64(MaxCPUQuota))
		}
		if p := c.GetPeriod(); p != 0 && (p < MinCPUPeriod || p > MaxCPUPeriod) {
			return fieldErr("cpu.period", "%d µs: want %d to %d", p, MinCPUPeriod, MaxCPUPeriod)
		}
		if err := checkCPUSet("cpu.cpus", c.GetCpus()); err != nil {
			return err
		}
		if err := checkCPUSet("cpu.mems", c.GetMems()); err != nil {
			return err
		}
	}
	if l := r.GetPids().GetLimit(); l != 0 && l != -1 && (l < 1 || l > MaxPidsLimit) {
		return fieldErr("pids.limit", "%d: want -1 (unlimited) or 1 to %d", l, MaxPidsLimit)
	}
	return nil
}

// checkCPUSet checks a cpuset list ("0-3,5"): ranges of numbers up to
// MaxCPUSetIndex, each range ascending. "" is no change.
func checkCPUSet(field, s string) error {
	if s == "" {
		return nil
	}
	if len(s) > MaxCPUSetLen {
		return fieldErr(field, "%d bytes: at most %d", len(s), MaxCPUSetLen)
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || a > b || b > MaxCPUSetIndex {
			return fieldErr(field, "%q is not a list such as 0-3,5 of numbers up to %d", s, MaxCPUSetIndex)
		}
	}
	return nil
}

// Update changes the cgroup limits of a container that has not exited,
// as runc update does (libct.OpUpdate). The request must pass CheckUpdate;
// fields left zero keep their value. A memory limit without a swap value
// keeps swap equal to the limit when it was (no swap, as containerd
// creates it).
func (m *Manager) Update(ctx context.Context, r *agentv1.UpdateContainerRequest) error {
	if err := CheckUpdate(r); err != nil {
		return err
	}
	c, err := m.get(r.GetContainerId())
	if err != nil {
		return err
	}
	res := libct.Resources{CPUs: r.GetCpu().GetCpus(), Mems: r.GetCpu().GetMems(), PidsLimit: r.GetPids().GetLimit()}
	if mem := r.GetMemory(); mem != nil {
		res.MemoryLimit, res.MemoryReservation, res.MemorySwap = mem.GetLimit(), mem.GetReservation(), mem.GetSwap()
	}
	if cpu := r.GetCpu(); cpu != nil {
		res.CPUShares, res.CPUQuota, res.CPUPeriod = cpu.GetShares(), cpu.GetQuota(), cpu.GetPeriod()
	}
	lreq := m.request(libct.OpUpdate, c.id)
	lreq.Resources = &res
	if _, err := m.cfg.Libct.Run(lreq); err != nil {
		if libct.IsKind(err, libct.KindNotRunning) {
			return fmt.Errorf("update container %q: it has exited: %w", c.id, ErrWrongState)
		}
		if !libct.IsKind(err, libct.KindRefused) {
			return fmt.Errorf("update container %q: %w", c.id, err)
		}
		// The kernel refused a value (a cpuset outside the guest's CPUs,
		// a limit below what the container uses): the host's mistake.
		return fmt.Errorf("update container %q: the guest's cgroup refused the limits (%w): %w", c.id, err, ErrInvalid)
	}
	return nil
}
