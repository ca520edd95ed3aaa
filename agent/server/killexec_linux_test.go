package server

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

// TestKillWithOrphanedExec: a container whose PID namespace holds an exited child of the
// agent that no wait of the agent reaps still exits when it is killed, so its wait returns
// and the host can report the exit and delete it. runc forks an exec's helpers with
// CLONE_PARENT, as children of the agent; an exec that fails while the container dies (a
// kubelet readiness probe racing a pod's deletion) leaves the helper it had already forked
// into the container's PID namespace unreaped, and the dying init waits in the kernel until
// every process of its namespace is reaped. Such a child is made here with an exec the agent
// does not know of (libcontainer called directly): nothing but container.ReapOrphans reaps
// it. Without it the wait hung, and with it the pod's deletion.
func TestKillWithOrphanedExec(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	const id = "orphan"
	ta.createStarted(t, id, spec(t, false, "sleep", "1000"))
	lc, err := libcontainer.Load(filepath.Join(ta.stateDir, "libcontainer"), id)
	if err != nil {
		t.Fatalf("load container %s: %v", id, err)
	}
	orphan := &libcontainer.Process{Args: []string{"sleep", "1000"}, Env: []string{"PATH=/bin"}, Cwd: "/", Init: false}
	if err := lc.Run(orphan); err != nil {
		t.Fatalf("exec the orphan in %s: %v", id, err)
	}
	ref := &agentv1.ProcessRef{ContainerId: id}
	if _, err := ta.client.SignalProcess(ctx(t), &agentv1.SignalProcessRequest{Process: ref, Signal: 9}); err != nil {
		t.Fatalf("SignalProcess(%s, SIGKILL) = %v", id, err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := ta.client.WaitProcess(wctx, &agentv1.WaitProcessRequest{Process: ref})
	if err != nil {
		t.Fatalf("WaitProcess(%s) after SIGKILL, an unreaped child of the agent in its PID namespace = %v, want its exit", id, err)
	}
	if w.GetSignal() != 9 {
		t.Errorf("WaitProcess(%s) = exit %d signal %d, want signal 9", id, w.GetExitCode(), w.GetSignal())
	}
	// The reaper logs after it reaps, which is what lets the init's exit through: the line
	// may come just after the wait returns.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(ta.logs.String(), "reaped a child nobody waited for"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("agent log has no line for the reaped orphan")
			break
		}
	}
}
