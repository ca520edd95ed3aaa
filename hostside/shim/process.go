package shim

import (
	"sync"
	"time"

	"github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/hostside/launcher"
)

// process is a container's init process or one exec'd process, as containerd sees it.
type process struct {
	containerID string
	execID      string // empty for the init process
	paths       stdioPaths
	spec        *specs.Process // exec'd processes only

	mu         sync.Mutex
	status     task.Status
	pid        uint32
	exitStatus uint32
	exitedAt   time.Time
	exited     chan struct{}
	streams    *streams
	// readBack, for an init process, copies what the container wrote to its termination
	// log back to the host once it exited and before its exit is reported (nil: none).
	readBack func()
}

func newProcess(containerID, execID string, paths stdioPaths) *process {
	return &process{containerID: containerID, execID: execID, paths: paths, status: task.Status_CREATED, exited: make(chan struct{})}
}

func (p *process) ref() launcher.ProcessRef {
	return launcher.ProcessRef{ContainerID: p.containerID, ExecID: p.execID}
}

// id is the process's ID in events: the exec ID, or the container ID for init.
func (p *process) id() string {
	if p.execID != "" {
		return p.execID
	}
	return p.containerID
}

func (p *process) state() (task.Status, uint32, uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.pid, p.exitStatus, p.exitedAt
}

func (p *process) setRunning(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status, p.pid = task.Status_RUNNING, pid
}

// setExited records the exit once and reports whether this call did.
func (p *process) setExited(status uint32, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == task.Status_STOPPED {
		return false
	}
	p.status, p.exitStatus, p.exitedAt = task.Status_STOPPED, status, at
	close(p.exited)
	return true
}
