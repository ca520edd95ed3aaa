package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	agentv1 "confguest/agent/api/v1"
)

// Stop shuts down the long-running guest name under base: the agent is asked to shut the
// guest down, the VMM gets until ctx's deadline (at most 10s) to exit, then its processes
// are killed and the run directory removed. Stale state is cleaned up too.
func Stop(ctx context.Context, base, name string) error {
	if base == "" {
		base = DefaultRunBase()
	}
	if err := CheckName(name); err != nil {
		return err
	}
	dir := filepath.Join(base, name)
	st, err := ReadState(dir)
	if err != nil {
		if _, serr := os.Stat(dir); serr == nil {
			return cleanStale(dir)
		}
		return fmt.Errorf("guest %q: %w (see confguest ps)", name, ErrNoGuest)
	}
	if st.alive() {
		if g, _, err := Attach(ctx, base, name); err == nil {
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err = g.Agent().Shutdown(sctx, &agentv1.ShutdownRequest{})
			cancel()
			g.Release()
			if err == nil {
				waitGone(ctx, st, 10*time.Second)
			}
		} else if !errors.Is(err, ErrNoGuest) {
			fmt.Fprintf(os.Stderr, "confguest: %v; killing the VM\n", err)
		}
	}
	return cleanStale(dir)
}

func waitGone(ctx context.Context, st State, max time.Duration) {
	deadline := time.Now().Add(max)
	for st.alive() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
}
