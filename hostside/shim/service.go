// Package shim is containerd's runtime v2 shim for confguest (io.containerd.confguest.v2):
// each pod runs in one confidential VM booted through the launcher library, and the task
// API is served by the guest's agent. The shim library is containerd v1.7's
// runtime/v2/shim, whose bootstrap works with containerd 1.6, 1.7 and 2.x.
//
// A container without CRI annotations (ctr run) is a pod of its own: its VM boots with the
// container's rootfs disk attached and stops when the container is deleted. A CRI pod's
// sandbox (pause) container boots the VM and owns it; the pod's other containers reach the
// same shim through the sandbox ID and get their rootfs disks hot-added.
package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/protobuf"
	cshim "github.com/containerd/containerd/runtime/v2/shim"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"confguest/hostside/launcher"
	"confguest/hostside/podnet"
)

// RuntimeName is the runtime type containerd knows this shim by.
const RuntimeName = "io.containerd.confguest.v2"

// Event topics, as containerd's runtime package names them.
const (
	topicCreate      = "/tasks/create"
	topicStart       = "/tasks/start"
	topicExit        = "/tasks/exit"
	topicDelete      = "/tasks/delete"
	topicExecAdded   = "/tasks/exec-added"
	topicExecStarted = "/tasks/exec-started"
)

// Service is the shim: containerd's task API for the containers of one pod.
type Service struct {
	id       string
	ctx      context.Context // lives as long as the shim; carries the namespace
	cfg      Config
	cfgErr   error
	events   chan event
	shutdown func()

	evMu     sync.Mutex
	evClosed bool

	mu         sync.Mutex
	pod        *pod
	containers map[string]*container

	// volumes watches the directories of host files of every container (volumeWakeups).
	volumes dirWatch
}

type event struct {
	topic string
	msg   any
}

// pod is the VM that runs the pod's containers.
type pod struct {
	guest *launcher.Guest
	owner string // the container whose deletion stops the VM
	// defaults is the pod's default policy, when it runs under one (a CRI pod that names
	// no policy, on an agent that enforces policies).
	defaults *podDefault
	// hostname is the pod's (its sandbox's), which its containers set in the pod's UTS
	// namespace in the guest.
	hostname string
	// sysctls are the pod's (its sandbox's, podSysctls), which its containers set in the
	// pod's namespaces in the guest.
	sysctls map[string]string
	// tap joins the pod's CNI interface to the VM; nil for a pod on the host's network.
	tap *podnet.Tap
}

// container is one task: a sandbox (pause) container is the VM itself and runs nothing in
// the guest.
type container struct {
	id      string
	bundle  string
	sandbox bool
	init    *process
	execs   map[string]*process
	// stopRefresh ends the refresh of the container's directories of host files
	// (refreshVolumes); nil when it has none.
	stopRefresh func()
}

var _ cshim.Shim = (*Service)(nil)

// New is the shim.Init of containerd's shim library.
func New(ctx context.Context, id string, pub cshim.Publisher, shutdown func()) (cshim.Shim, error) {
	cfg, err := LoadConfig()
	if err != nil {
		log.G(ctx).WithError(err).Error("confguest shim configuration")
		// Keep going with the defaults so that the delete subcommand can still clean up;
		// Create reports the error.
		cfg, _ = ParseConfig(jsonEmpty())
	}
	s := &Service{
		id: id, ctx: ctx, cfg: cfg, cfgErr: err,
		events:     make(chan event, 128),
		shutdown:   shutdown,
		containers: map[string]*container{},
	}
	go s.forward(pub)
	return s, nil
}

// forward publishes events in order.
func (s *Service) forward(pub cshim.Publisher) {
	ns, _ := namespaces.Namespace(s.ctx)
	ctx := namespaces.WithNamespace(context.Background(), ns)
	for e := range s.events {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := pub.Publish(pctx, e.topic, e.msg); err != nil {
			log.G(s.ctx).WithError(err).WithField("topic", e.topic).Error("publish event")
		}
		cancel()
	}
	pub.Close()
}

func (s *Service) publish(topic string, msg any) {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	if s.evClosed {
		log.G(s.ctx).WithField("topic", topic).Warn("event after shutdown dropped")
		return
	}
	s.events <- event{topic, msg}
}

// closeEvents ends forwarding once the queued events are out; the shim library waits for
// the publisher to close before the shim exits.
func (s *Service) closeEvents() {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	if !s.evClosed {
		s.evClosed = true
		close(s.events)
	}
}

// lookup finds a container and one of its processes.
func (s *Service) lookup(id, execID string) (*container, *process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, nil, fmt.Errorf("container %s: %w", id, errNotFound)
	}
	if execID == "" {
		return c, c.init, nil
	}
	p, ok := c.execs[execID]
	if !ok {
		return nil, nil, fmt.Errorf("process %s of container %s: %w", execID, id, errNotFound)
	}
	return c, p, nil
}

// guest is the pod's running guest.
func (s *Service) guest() (*launcher.Guest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pod == nil {
		return nil, fmt.Errorf("the pod's VM is not running: %w", errPrecondition)
	}
	return s.pod.guest, nil
}

// Start starts a created container's init process or an exec'd process.
func (s *Service) Start(ctx context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	pid, err := s.start(ctx, r)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &taskapi.StartResponse{Pid: pid}, nil
}

func (s *Service) start(ctx context.Context, r *taskapi.StartRequest) (uint32, error) {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return 0, err
	}
	if st, _, _, _ := p.state(); st != task.Status_CREATED {
		return 0, fmt.Errorf("process %s is %s, not created: %w", p.id(), st, errPrecondition)
	}
	if c.sandbox {
		p.setRunning(p.pid)
		s.publish(topicStart, &eventsapi.TaskStart{ContainerID: c.id, Pid: p.pid})
		return p.pid, nil
	}
	g, err := s.guest()
	if err != nil {
		return 0, err
	}
	if p.execID == "" {
		if err := g.Start(ctx, c.id); err != nil {
			return 0, err
		}
		p.setRunning(p.pid)
		go s.wait(g, p)
		s.publish(topicStart, &eventsapi.TaskStart{ContainerID: c.id, Pid: p.pid})
		return p.pid, nil
	}
	pid, err := g.StartExec(ctx, c.id, p.execID, p.spec, launcher.Stdio{Stdin: p.paths.Stdin != ""})
	if err != nil {
		return 0, err
	}
	st, err := openStreams(s.ctx, g, p.ref(), p.paths)
	if err != nil {
		g.Signal(ctx, p.ref(), uint32(syscall.SIGKILL), false)
		return 0, err
	}
	p.streams = st
	p.setRunning(pid)
	go s.wait(g, p)
	s.publish(topicExecStarted, &eventsapi.TaskExecStarted{ContainerID: c.id, ExecID: p.execID, Pid: pid})
	return pid, nil
}

// wait waits for a started process to exit, lets its output drain and reports the exit.
// A process the guest no longer has (its container was deleted there, or the VM is gone)
// was killed with it.
func (s *Service) wait(g *launcher.Guest, p *process) {
	e, err := g.Wait(s.ctx, p.ref())
	switch {
	case err == nil:
		if p.readBack != nil {
			p.readBack()
		}
	case goneInGuest(g, err):
		e = launcher.Exit{Code: 128 + int(syscall.SIGKILL), At: time.Now()}
	default:
		log.G(s.ctx).WithError(err).WithField("process", p.id()).Error("wait for process")
		e = launcher.Exit{Code: 255, At: time.Now()}
	}
	s.exit(p, uint32(e.Code), e.At)
}

// goneInGuest reports whether err, from a call on a process or container in guest g, says
// that it no longer runs there: the agent answers NotFound (the process has exited, its
// create never succeeded, or it was deleted), or the VM itself has exited.
func goneInGuest(g *launcher.Guest, err error) bool {
	if status.Code(err) == codes.NotFound {
		return true
	}
	select {
	case <-g.Done():
		return true
	default:
		return false
	}
}

// exit records a process's exit once: its output is copied to the end first (bounded),
// then TaskExit is published and waiters are released.
func (s *Service) exit(p *process, status uint32, at time.Time) {
	p.mu.Lock()
	st, stopped := p.streams, p.status == task.Status_STOPPED
	p.mu.Unlock()
	if stopped {
		return
	}
	if st != nil {
		st.drain()
	}
	if !p.setExited(status, at) {
		return
	}
	s.publish(topicExit, &eventsapi.TaskExit{
		ContainerID: p.containerID, ID: p.id(), Pid: p.pid, ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at),
	})
}

// Wait blocks until the process exited.
func (s *Service) Wait(ctx context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	_, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, errdefs.ToGRPC(ctx.Err())
	}
	_, _, status, at := p.state()
	return &taskapi.WaitResponse{ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// Kill signals a process (with All, every process of the container).
func (s *Service) Kill(ctx context.Context, r *taskapi.KillRequest) (*emptypb.Empty, error) {
	after, err := s.kill(ctx, r)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if after != nil {
		// Once this reply is on its way: see stopSandbox.
		defer func() { go after() }()
	}
	return &emptypb.Empty{}, nil
}

// kill signals r's process. For a pod's sandbox it returns the stop to run after Kill
// has answered.
func (s *Service) kill(ctx context.Context, r *taskapi.KillRequest) (after func(), err error) {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st, _, _, _ := p.state()
	if st == task.Status_STOPPED {
		return nil, fmt.Errorf("process %s: process already finished: %w", p.id(), errNotFound)
	}
	if c.sandbox {
		// The pause "process" is the VM; it ends on any signal that would end pause, and
		// with it the VM: nothing of the pod runs on once its sandbox is stopped.
		switch syscall.Signal(r.Signal) {
		case syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT:
			return func() { s.stopSandbox(context.WithoutCancel(ctx), c, p, r.Signal) }, nil
		}
		return nil, nil
	}
	return nil, s.signal(ctx, r, p, st)
}

// stopSandbox stops the pod's VM, reports its containers' exits, then the sandbox's own.
// It runs after Kill answered: the sandbox's exit makes containerd delete it and shut the
// shim down, and a shim that exits before Kill's reply is written fails the pod's stop
// with "ttrpc: closed" (seen once in 71 pod stops at load 10).
func (s *Service) stopSandbox(ctx context.Context, c *container, p *process, signal uint32) {
	s.mu.Lock()
	owner := s.pod != nil && s.pod.owner == c.id
	if owner {
		s.closePod(ctx)
	}
	s.mu.Unlock()
	if owner {
		s.exitAll(p)
	}
	s.exit(p, 128+signal, time.Now())
}

// signal delivers r's signal to a container's process in the guest.
func (s *Service) signal(ctx context.Context, r *taskapi.KillRequest, p *process, st task.Status) error {
	if st == task.Status_CREATED && r.ExecID != "" {
		// Never started: nothing runs in the guest.
		go s.exit(p, 128+r.Signal, time.Now())
		return nil
	}
	g, err := s.guest()
	if err != nil {
		// No VM: nothing of the pod runs any more.
		go s.exit(p, 128+uint32(syscall.SIGKILL), time.Now())
		return fmt.Errorf("process %s: process already finished (%w): %w", p.id(), err, errNotFound)
	}
	err = g.Signal(ctx, p.ref(), r.Signal, r.All)
	if err != nil && !goneInGuest(g, err) {
		return err
	}
	if st == task.Status_CREATED {
		// A created init process that is killed before start never runs; the agent's
		// wait reports the exit. (A started one has its wait running since Start.)
		go s.wait(g, p)
	}
	if err != nil {
		// containerd's answer for a process that has exited; its exit is reported by
		// its wait, as the guest no longer has it.
		return fmt.Errorf("process %s: process already finished (%w): %w", p.id(), err, errNotFound)
	}
	return nil
}

// Delete removes an exited process, or a container with its resources in the guest. The
// container that owns the VM stops it.
func (s *Service) Delete(ctx context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	resp, err := s.delete(ctx, r)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *Service) delete(ctx context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st, pid, status, at := p.state()
	if st == task.Status_RUNNING {
		return nil, fmt.Errorf("process %s is running: kill it first: %w", p.id(), errPrecondition)
	}
	if st == task.Status_CREATED && r.ExecID == "" && !c.sandbox {
		// Created, never started: the agent kills its waiting init on delete.
		status, at = 128+uint32(syscall.SIGKILL), time.Now()
	}
	resp := &taskapi.DeleteResponse{Pid: pid, ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}
	if r.ExecID != "" {
		s.mu.Lock()
		delete(c.execs, r.ExecID)
		s.mu.Unlock()
		return resp, nil
	}
	if p.streams != nil {
		p.streams.stop()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if c.stopRefresh != nil {
		c.stopRefresh()
	}
	if !c.sandbox && s.pod != nil {
		g := s.pod.guest
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := g.Delete(dctx, c.id)
		cancel()
		if err != nil && goneInGuest(g, err) {
			// Never created there, already deleted, or the VM is gone: nothing to remove.
			err = nil
		}
		if err != nil && s.pod.owner != c.id {
			errs = append(errs, fmt.Errorf("in the guest: %w", err))
		}
		if err == nil && s.pod.defaults != nil {
			s.pod.defaults.forget(ctx, g, c.id)
		}
	}
	if s.pod != nil && s.pod.owner == c.id {
		// closePod stops the VM whatever happens (it kills what does not power off) and
		// logs what went wrong: the delete of the pod's owner always succeeds.
		s.closePod(ctx)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	delete(s.containers, c.id)
	p.setExited(status, at) // a created process that never ran
	s.publish(topicDelete, &eventsapi.TaskDelete{
		ContainerID: c.id, ID: c.id, Pid: pid, ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at),
	})
	return resp, nil
}

// Exec adds a process to a running container; Start runs it.
func (s *Service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	if err := s.exec(r); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) exec(r *taskapi.ExecProcessRequest) error {
	c, _, err := s.lookup(r.ID, "")
	if err != nil {
		return err
	}
	if c.sandbox {
		return fmt.Errorf("exec in the pod sandbox %s: the pause container runs nothing to exec into: %w", c.id, errPrecondition)
	}
	if r.Spec == nil {
		return fmt.Errorf("exec %s: no process spec: %w", r.ExecID, errInvalid)
	}
	// containerd encodes non-protobuf types such as the OCI Process as JSON.
	var ps specs.Process
	if err := json.Unmarshal(r.Spec.GetValue(), &ps); err != nil {
		return fmt.Errorf("exec %s: decode process spec: %w: %w", r.ExecID, err, errInvalid)
	}
	ps.Terminal = r.Terminal
	ps.ApparmorProfile, ps.SelinuxLabel = "", ""
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := c.execs[r.ExecID]; ok {
		return fmt.Errorf("exec %s in container %s: %w", r.ExecID, r.ID, errExists)
	}
	p := newProcess(c.id, r.ExecID, stdioPaths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal})
	p.spec = &ps
	c.execs[r.ExecID] = p
	s.publish(topicExecAdded, &eventsapi.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return nil
}

// State reports a process's state.
func (s *Service) State(ctx context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	st, pid, status, at := p.state()
	resp := &taskapi.StateResponse{
		ID: p.id(), Bundle: c.bundle, Pid: pid, Status: st, ExecID: r.ExecID,
		Stdin: p.paths.Stdin, Stdout: p.paths.Stdout, Stderr: p.paths.Stderr, Terminal: p.paths.Terminal,
		ExitStatus: status,
	}
	if st == task.Status_STOPPED {
		resp.ExitedAt = protobuf.ToTimestamp(at)
	}
	return resp, nil
}

// Pids lists the container's processes (guest PIDs).
func (s *Service) Pids(ctx context.Context, r *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	c, p, err := s.lookup(r.ID, "")
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	var out []*task.ProcessInfo
	if st, pid, _, _ := p.state(); st == task.Status_RUNNING {
		out = append(out, &task.ProcessInfo{Pid: pid})
	}
	s.mu.Lock()
	for _, e := range c.execs {
		if st, pid, _, _ := e.state(); st == task.Status_RUNNING {
			out = append(out, &task.ProcessInfo{Pid: pid})
		}
	}
	s.mu.Unlock()
	return &taskapi.PidsResponse{Processes: out}, nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	_, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	g, err := s.guest()
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := g.Resize(ctx, p.ref(), r.Width, r.Height); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes a process's stdin once what was written before reached it.
func (s *Service) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	_, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	p.mu.Lock()
	st := p.streams
	p.mu.Unlock()
	if r.Stdin && st != nil {
		st.closeStdin(ctx)
	}
	return &emptypb.Empty{}, nil
}

// Pause is not supported: the guest has no freezer the host may use.
func (s *Service) Pause(ctx context.Context, r *taskapi.PauseRequest) (*emptypb.Empty, error) {
	return nil, errdefs.ToGRPC(fmt.Errorf("pause: %w", errNotImpl))
}

// Resume is not supported (see Pause).
func (s *Service) Resume(ctx context.Context, r *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	return nil, errdefs.ToGRPC(fmt.Errorf("resume: %w", errNotImpl))
}

// Checkpoint is not supported: a confidential guest's memory is not the host's to save.
func (s *Service) Checkpoint(ctx context.Context, r *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, errdefs.ToGRPC(fmt.Errorf("checkpoint: %w", errNotImpl))
}

// Connect reports the shim's and the VMM's PIDs.
func (s *Service) Connect(ctx context.Context, r *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	resp := &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if c, p, err := s.lookup(r.ID, ""); err == nil && c != nil {
		_, resp.TaskPid, _, _ = p.state()
	}
	return resp, nil
}

// Shutdown ends the shim once no container is left.
func (s *Service) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.containers) > 0 {
		return &emptypb.Empty{}, nil
	}
	s.closePod(ctx)
	s.volumes.close()
	if address, err := cshim.ReadAddress("address"); err == nil {
		cshim.RemoveSocket(address)
	}
	s.closeEvents()
	s.shutdown()
	return &emptypb.Empty{}, nil
}

// logWriter turns the launcher's progress lines into shim log lines.
type logWriter struct{ ctx context.Context }

func (w logWriter) Write(b []byte) (int, error) {
	log.G(w.ctx).Info(string(trimNL(b)))
	return len(b), nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	return b
}
