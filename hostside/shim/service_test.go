package shim

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/launcher"
)

// goneAgent is an agent that knows no container: what the guest answers for a container
// whose create never succeeded there, that was deleted, or whose process exited and was
// removed.
type goneAgent struct {
	agentv1.AgentClient // nil: no other call is expected
}

func notFound(id string) error {
	return status.Errorf(codes.NotFound, "container %q: not found", id)
}

func (goneAgent) SignalProcess(_ context.Context, r *agentv1.SignalProcessRequest) (*agentv1.SignalProcessResponse, error) {
	return nil, notFound(r.GetProcess().GetContainerId())
}

func (goneAgent) WaitProcess(_ context.Context, r *agentv1.WaitProcessRequest) (*agentv1.WaitProcessResponse, error) {
	return nil, notFound(r.GetProcess().GetContainerId())
}

func (goneAgent) DeleteContainer(_ context.Context, r *agentv1.DeleteContainerRequest) (*agentv1.DeleteContainerResponse, error) {
	return nil, notFound(r.GetContainerId())
}

// testPod is a shim serving a pod (sandbox "pod") whose guest is agent, with container
// "c" in state st.
func testPod(agent agentv1.AgentClient, st task.Status) *Service {
	c := &container{id: "c", init: newProcess("c", "", stdioPaths{}), execs: map[string]*process{}}
	c.init.status = st
	return &Service{
		ctx:    context.Background(),
		events: make(chan event, 16),
		pod:    &pod{guest: launcher.NewGuest(agent), owner: "pod"},
		containers: map[string]*container{
			"pod": {id: "pod", sandbox: true, init: newProcess("pod", "", stdioPaths{}), execs: map[string]*process{}},
			"c":   c,
		},
	}
}

// nextEvent returns the next event the shim published, failing after a few seconds.
func nextEvent(t *testing.T, s *Service) event {
	t.Helper()
	select {
	case e := <-s.events:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event published")
		return event{}
	}
}

// TestKillGoneInGuest: killing a container the guest does not have answers as containerd
// expects for a finished process (NotFound, which CRI's stop ignores), and the exit is
// reported, so a pod's stop goes on.
func TestKillGoneInGuest(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		state task.Status
	}{
		{"created", task.Status_CREATED},
		{"running", task.Status_RUNNING},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testPod(goneAgent{}, tc.state)
			if tc.state == task.Status_RUNNING {
				// Start runs the process's wait.
				go s.wait(s.pod.guest, s.containers["c"].init)
			}
			_, err := s.Kill(ctx, &taskapi.KillRequest{ID: "c", Signal: uint32(syscall.SIGKILL)})
			if !errdefs.IsNotFound(errdefs.FromGRPC(err)) || !strings.Contains(err.Error(), "process already finished") {
				t.Errorf("Kill(c) of a container the guest does not have = %v, want NotFound: process already finished", err)
			}
			e := nextEvent(t, s)
			exit, ok := e.msg.(*eventsapi.TaskExit)
			if e.topic != topicExit || !ok || exit.ContainerID != "c" || exit.ExitStatus != 137 {
				t.Errorf("event after Kill(c) = %s %+v, want %s of c with status 137", e.topic, e.msg, topicExit)
			}
			if st, _, _, _ := s.containers["c"].init.state(); st != task.Status_STOPPED {
				t.Errorf("state of c after Kill = %v, want STOPPED", st)
			}
			_, err = s.Kill(ctx, &taskapi.KillRequest{ID: "c", Signal: uint32(syscall.SIGTERM)})
			if !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
				t.Errorf("second Kill(c) = %v, want NotFound", err)
			}
		})
	}
}

// TestDeleteGoneInGuest: deleting a container the guest does not have succeeds and removes
// it from the shim.
func TestDeleteGoneInGuest(t *testing.T) {
	s := testPod(goneAgent{}, task.Status_STOPPED)
	if _, err := s.Delete(context.Background(), &taskapi.DeleteRequest{ID: "c"}); err != nil {
		t.Fatalf("Delete(c) of a container the guest does not have = %v, want success", err)
	}
	if _, ok := s.containers["c"]; ok {
		t.Errorf("Delete(c) left c in the shim")
	}
	if e := nextEvent(t, s); e.topic != topicDelete {
		t.Errorf("event after Delete(c) = %s, want %s", e.topic, topicDelete)
	}
}

// TestKillSandboxStopsVM: stopping a pod's sandbox stops the VM, whatever its containers'
// state in the guest, and reports their exits, then the pause exit, all after Kill has
// answered: containerd deletes an exited sandbox and shuts the shim down, which must not
// overtake Kill's reply.
func TestKillSandboxStopsVM(t *testing.T) {
	s := testPod(goneAgent{}, task.Status_RUNNING)
	s.containers["pod"].init.status = task.Status_RUNNING
	// Unbuffered: an exit published before Kill returns would block Kill.
	s.events = make(chan event)
	killed := make(chan error, 1)
	go func() {
		_, err := s.Kill(context.Background(), &taskapi.KillRequest{ID: "pod", Signal: uint32(syscall.SIGKILL)})
		killed <- err
	}()
	select {
	case err := <-killed:
		if err != nil {
			t.Fatalf("Kill(pod) = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Kill(pod) did not return before its exits were taken: it reports them before its reply")
	}
	// The containers' exits first, the sandbox's last.
	for _, id := range []string{"c", "pod"} {
		e := nextEvent(t, s)
		if exit, ok := e.msg.(*eventsapi.TaskExit); e.topic != topicExit || !ok || exit.ContainerID != id || exit.ExitStatus != 137 {
			t.Errorf("event after Kill(pod) = %s %+v, want %s of %s with status 137", e.topic, e.msg, topicExit, id)
		}
	}
	s.mu.Lock()
	running := s.pod != nil
	s.mu.Unlock()
	if running {
		t.Errorf("Kill(pod) left the pod's VM running")
	}
	s.evMu.Lock()
	s.events = make(chan event, 16) // the deletes' events below need not be taken
	s.evMu.Unlock()
	// The container of the stopped pod: nothing runs, its kill and delete succeed.
	if _, err := s.Kill(context.Background(), &taskapi.KillRequest{ID: "c", Signal: uint32(syscall.SIGKILL)}); !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		t.Errorf("Kill(c) after the pod stopped = %v, want NotFound", err)
	}
	for _, id := range []string{"c", "pod"} {
		if _, err := s.Delete(context.Background(), &taskapi.DeleteRequest{ID: id}); err != nil {
			t.Errorf("Delete(%s) after the pod stopped = %v", id, err)
		}
	}
}
