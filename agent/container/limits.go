package container

import "fmt"

// Bounds on what one request or one guest may hold. They are compile-time
// constants: the host has no channel to raise them (tests lower them
// through Config.Limits). A request over a bound fails with ErrLimit
// (ResourceExhausted at the RPC edge).
const (
	// MaxContainers bounds the containers of the agent, counting those
	// being created or deleted.
	MaxContainers = 32
	// MaxExecs bounds the exec'd processes a container keeps: running ones
	// and exited ones whose status and output wait for the host. When a
	// new exec would pass it, the exited process that exited first is
	// dropped; when all are running, the exec is refused.
	MaxExecs = 16
	// MaxScratchBytes bounds the tmpfs upper layer (rootfs.scratch_bytes)
	// of one container.
	MaxScratchBytes = 4 << 30
)

// Limits overrides the bounds above for tests; a zero field means the
// constant.
type Limits struct {
	Containers   int
	Execs        int
	ScratchBytes uint64
}

func (l Limits) containers() int { return or(l.Containers, MaxContainers) }
func (l Limits) execs() int      { return or(l.Execs, MaxExecs) }
func (l Limits) scratch() uint64 { return or(l.ScratchBytes, MaxScratchBytes) }

func or[T int | uint64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func checkScratch(l Limits, n uint64) error {
	if n > l.scratch() {
		return fmt.Errorf("rootfs.scratch_bytes: %w: %d bytes, the limit is %d (container.MaxScratchBytes)", ErrLimit, n, l.scratch())
	}
	return nil
}

// makeRoomForExec drops exited processes of c, the earliest exit first,
// until one more fits under the exec limit, or fails with ErrLimit when
// every kept process still runs; dropped, if set, hears of each. c.mu
// must be held.
func (c *Container) makeRoomForExec(l Limits, dropped func(containerID, execID string)) error {
	for len(c.execs) >= l.execs() {
		var oldest *Process
		for _, p := range c.execs {
			if p.exited() && (oldest == nil || p.status.ExitedAt.Before(oldest.status.ExitedAt)) {
				oldest = p
			}
		}
		if oldest == nil {
			return fmt.Errorf("exec in container %q: %w: %d processes run, the limit is %d (container.MaxExecs): wait for one to exit", c.id, ErrLimit, len(c.execs), l.execs())
		}
		oldest.closeIO()
		delete(c.execs, oldest.id)
		if dropped != nil {
			dropped(c.id, oldest.id)
		}
	}
	return nil
}
