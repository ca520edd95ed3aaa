package server

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	agentv1 "confguest/agent/api/v1"
)

// Shutdown deletes every container, then either asks PID 1 to power off
// (RequestPowerOff) or makes Run return.
func TestShutdown(t *testing.T) {
	for _, powerOff := range []bool{false, true} {
		t.Run(map[bool]string{false: "exit", true: "request power-off"}[powerOff], func(t *testing.T) {
			dir := t.TempDir()
			image := busyboxImage(t, dir)
			stateDir := filepath.Join(dir, "state")
			sock := filepath.Join(dir, "agent.sock")
			var requested atomic.Int32
			cfg := Config{
				Address:  "unix:" + sock,
				StateDir: stateDir,
				Logger:   slog.New(slog.DiscardHandler),
				Cmdline:  "confguest.tee=snp",
			}
			cfg.Containers.ImageDirs = []string{image}
			if powerOff {
				cfg.RequestPowerOff = func() error { requested.Add(1); return nil }
			}
			ready := make(chan struct{})
			cfg.Ready = func() { close(ready) }
			runCtx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- Run(runCtx, withLibct(cfg)) }()
			<-ready
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			raw := ttrpc.NewClient(conn)
			defer raw.Close()
			c := agentv1.NewAgentClient(raw)
			ta := &testAgent{client: c, raw: raw, image: image, stateDir: stateDir}
			ta.create(t, "s1", spec(t, false, "sleep", "1000"), nil)
			if _, err := c.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "s1"}); err != nil {
				t.Fatal(err)
			}
			st, _ := c.State(ctx(t), &agentv1.StateRequest{ContainerId: "s1"})
			if _, err := c.Shutdown(ctx(t), &agentv1.ShutdownRequest{}); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			if left := leftovers(t, stateDir, "s1", st.GetContainer().GetPid()); len(left) > 0 {
				t.Errorf("after Shutdown, left behind:\n%s", strings.Join(left, "\n"))
			}
			if powerOff {
				if requested.Load() != 1 {
					t.Errorf("RequestPowerOff called %d times, want 1", requested.Load())
				}
				cancel() // PID 1 answers with SIGTERM
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run after Shutdown = %v, want nil", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return after Shutdown")
			}
		})
	}
}
