// Package container runs OCI containers for the agent with libcontainer:
// it validates requests, assembles each container's rootfs (a dm-verity
// image or a guest directory under an overlayfs with a tmpfs upper),
// creates, starts and execs processes (libcontainer runs in the helper of
// package libct), keeps their stdio, waits for them, and tears everything
// down again on delete.
package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/libct"
)

// Config configures a Manager.
type Config struct {
	// StateDir holds containers/<id>/ (mounts, scratch), libcontainer's
	// state and shared/ (bind-mount sources). A tmpfs in the guest.
	StateDir string
	// ImageDirs are the guest directories a rootfs.guest_directory may
	// name (images built into the verity root).
	ImageDirs []string
	// BindDirs are the directories bind-mount sources must lie in; empty
	// means StateDir/shared.
	BindDirs []string
	// Verity opens dm-verity devices for block rootfs; nil refuses them.
	Verity VerityDevices
	// SysBlock is where disks are looked up by serial ("" = /sys/block).
	SysBlock string
	// OutputLimit bounds each unread output stream (0 = output.DefaultLimit).
	OutputLimit int
	// LayerLinger is how long a block image stays open (dm-verity device
	// and read-only mount) after its last container is deleted, so that
	// the next container from it finds its pages verified and cached.
	// 0 closes it with its last container.
	LayerLinger time.Duration
	// Limits lowers the bounds of limits.go (tests); zero fields keep them.
	Limits Limits
	// Libct runs the libcontainer helper; the zero value runs libct.DefaultPath.
	Libct libct.Command
	// ExecDropped, if set, is called when an exited exec'd process is
	// dropped to make room for another (MaxExecs), so that what the agent
	// remembers of it elsewhere (its admission) goes too.
	ExecDropped func(containerID, execID string)
	Logger      *slog.Logger
}

// Manager owns all containers of the agent.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	containers map[string]*Container // nil value: ID reserved by a create or delete in progress
	idleTimer  *time.Timer
	closing    bool           // Close started: no new create
	creating   sync.WaitGroup // creates in progress, which Close waits for

	layerMu sync.Mutex
	layers  map[string]*layer // by layerKey

	waiting waiters // the processes whose waits reap them (ReapOrphans leaves them alone)

	podMu     sync.Mutex
	pod       *pod                     // the guest's pod namespaces, once a container joined one
	emptyDirs map[string]emptyDirState // the pod's emptyDirs, by name (volume_linux.go)
}

// Container is one container and its processes.
type Container struct {
	id      string
	dir     string
	created time.Time

	mu      sync.Mutex
	init    *Process
	execs   map[string]*Process
	started bool
	// sharedPID: no PID namespace of its own (the pod's, or the guest's), so that killing
	// its init kills nothing else
	sharedPID bool
	undo      cleanups                // rootfs teardown
	volumes   map[string]*filesVolume // the copies of host files, by destination (volume_linux.go)
}

// NewManager prepares the state directory and makes the calling process a child
// subreaper: the processes the helper starts become its children when the helper exits.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("container manager: empty state directory")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("container manager: become a child subreaper: %w", err)
	}
	if len(cfg.BindDirs) == 0 {
		cfg.BindDirs = []string{filepath.Join(cfg.StateDir, "shared")}
	}
	for _, d := range []string{"containers", "layers", "libcontainer", "shared"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o711); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Libct.Log == nil {
		cfg.Libct.Log = log
	}
	return &Manager{cfg: cfg, log: log, containers: map[string]*Container{}, layers: map[string]*layer{}}, nil
}

// request is the helper's request for operation op on container id, with libcontainer's
// state directory.
func (m *Manager) request(op, id string) libct.Request {
	return libct.Request{Op: op, ID: id, Root: filepath.Join(m.cfg.StateDir, "libcontainer")}
}

// run runs one operation of the helper on container id.
func (m *Manager) run(op, id string) (libct.Result, error) {
	return m.cfg.Libct.Run(m.request(op, id))
}

// killAll sends SIGKILL to the container's init, and to all its processes when it shares
// the pod's PID namespace (libcontainer's rule); an init that exited is no error.
func (m *Manager) killAll(id string) error {
	req := m.request(libct.OpSignal, id)
	req.Signal = int(unix.SIGKILL)
	_, err := m.cfg.Libct.Run(req)
	if libct.IsKind(err, libct.KindNotRunning) {
		return nil
	}
	return err
}

// CreateRequest describes a container to create.
type CreateRequest struct {
	ID        string
	Spec      *specs.Spec // decoded at the RPC edge; Create fills in the root path and cgroup
	Rootfs    RootfsSource
	Stdin     bool
	TTYWidth  uint32
	TTYHeight uint32
	// PodNamespaces are the pod's namespaces the container joins instead of
	// its own (pod_linux.go); each must be listed in the spec, without a path.
	PodNamespaces []specs.LinuxNamespaceType
	// Volumes are mounted after the spec's mounts (volume_linux.go).
	Volumes []*agentv1.Volume
	// Admit, if set, records the policy's admission of the container. It
	// is called once the container exists and before its ID is released
	// to other calls; an error rolls the create back.
	Admit func() error
}

// Create validates req, assembles the rootfs and creates the container;
// its init process waits for Start. A failure leaves nothing behind.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (pid int, err error) {
	if err := ValidateID("container_id", req.ID); err != nil {
		return 0, err
	}
	spec := req.Spec
	if err := checkSpec(spec, m.cfg.BindDirs); err != nil {
		return 0, err
	}
	if err := checkVolumes(req.Volumes, spec); err != nil {
		return 0, err
	}
	if err := m.checkRootfs(req.Rootfs); err != nil {
		return 0, err
	}
	if err := checkScratch(m.cfg.Limits, req.Rootfs.ScratchBytes); err != nil {
		return 0, err
	}
	// The pod's namespaces replace the container's own of those types; the pod is
	// created only for a request that can join it.
	podIdx, err := podNamespaceIndexes(spec, req.PodNamespaces)
	if err != nil {
		return 0, err
	}
	podPaths, err := m.podNamespaces(req.PodNamespaces)
	if err != nil {
		return 0, err
	}
	for t, i := range podIdx {
		spec.Linux.Namespaces[i].Path = podPaths[t]
	}
	if err := m.reserve(req.ID); err != nil {
		return 0, err
	}
	defer m.creating.Done()
	var undo cleanups
	defer func() {
		if err != nil {
			if cerr := undo.run(); cerr != nil {
				m.log.Error("roll back failed create", "container", req.ID, "err", cerr)
			}
			// No lingering image either: a failed create leaves no
			// device-mapper target behind.
			if cerr := m.closeUnusedLayers(); cerr != nil {
				m.log.Error("roll back failed create", "container", req.ID, "err", cerr)
			}
			m.release(req.ID, nil)
		}
	}()

	begin := time.Now()
	dir := filepath.Join(m.cfg.StateDir, "containers", req.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return 0, fmt.Errorf("create container directory: %w", err)
	}
	undo.push(func() error { return os.RemoveAll(dir) })
	rootfs, err := m.mountRootfs(ctx, dir, req.Rootfs, &undo)
	if err != nil {
		return 0, err
	}

	vmounts, copies, err := m.volumeMounts(dir, req.Volumes)
	if err != nil {
		return 0, err
	}
	spec.Mounts = append(spec.Mounts, vmounts...)

	mounted := time.Now()
	if spec.Root == nil {
		spec.Root = new(specs.Root)
	}
	spec.Root.Path = rootfs
	spec.Linux.CgroupsPath = "/confguest/" + req.ID
	rootfsUndo := len(undo) // steps Delete runs after its own teardown
	p, err := prepareIO(spec.Process.Terminal, req.Stdin, m.cfg.OutputLimit)
	if err != nil {
		return 0, err
	}
	undo.push(func() error { p.closeIO(); return nil })
	lreq := m.request(libct.OpCreate, req.ID)
	lreq.Spec = spec
	lreq.ConsoleWidth, lreq.ConsoleHeight = consoleSize(req.TTYWidth, req.TTYHeight)
	res, err := m.cfg.Libct.Run(lreq, p.passTo(&lreq)...)
	if err != nil {
		if libct.IsKind(err, libct.KindInvalid) {
			return 0, fieldErr("spec_json", "%v", err)
		}
		// The helper removes what it made when it fails; when it died without saying,
		// remove it here.
		var lerr *libct.Error
		if !errors.As(err, &lerr) {
			if _, derr := m.run(libct.OpDestroy, req.ID); derr != nil {
				m.log.Debug("remove the state of a failed create", "container", req.ID, "err", derr)
			}
		}
		return 0, fmt.Errorf("create container %s: %w", req.ID, err)
	}
	undo.push(func() error { _, err := m.run(libct.OpDestroy, req.ID); return err })
	undo.push(func() error {
		_ = p.proc.Kill()
		_, _ = p.Wait(context.Background())
		return nil
	})
	if err := p.started(res.Pid); err != nil {
		return 0, fmt.Errorf("container %s: %w", req.ID, err)
	}
	m.waiting.add(p)

	if req.Admit != nil {
		if err := req.Admit(); err != nil {
			return 0, fmt.Errorf("admit container %s: %w", req.ID, err)
		}
	}
	c := &Container{
		id: req.ID, dir: dir, created: time.Now(),
		init: p, execs: map[string]*Process{}, volumes: copies,
		sharedPID: !slices.ContainsFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.PIDNamespace && ns.Path == ""
		}),
	}
	// The container now owns the rootfs teardown; the rest of the undo
	// stack is replaced by Delete's own sequence.
	c.undo = undo[:rootfsUndo]
	m.release(req.ID, c)
	undo = nil
	if slices.Contains(req.PodNamespaces, specs.PIDNamespace) {
		// In the pod's PID namespace the init's exit kills nothing else (its PID 1 is the
		// holder): the container's other processes are killed with it, as containerd's
		// runc shim does for a container without a PID namespace of its own.
		go func() {
			<-p.done
			if err := m.killAll(req.ID); err != nil {
				m.log.Debug("kill the processes left after the init exited", "container", req.ID, "err", err)
			}
		}()
	}
	m.log.Info("container created", "container", req.ID, "pid", p.pid,
		"rootfs", mounted.Sub(begin).Round(time.Microsecond), "libct", time.Since(mounted).Round(time.Microsecond))
	return p.pid, nil
}

func (m *Manager) reserve(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.containers[id]; ok {
		return fmt.Errorf("container %q: %w", id, ErrExists)
	}
	if n := m.cfg.Limits.containers(); len(m.containers) >= n {
		return fmt.Errorf("container %q: %w: the agent holds %d containers, the limit is %d (container.MaxContainers): delete one first", id, ErrLimit, len(m.containers), n)
	}
	if m.closing {
		return fmt.Errorf("container %q: %w: the agent is shutting down", id, ErrWrongState)
	}
	m.containers[id] = nil
	m.creating.Add(1)
	return nil
}

// release ends a reservation: c nil frees the ID, otherwise c takes it.
func (m *Manager) release(id string, c *Container) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c == nil {
		delete(m.containers, id)
		return
	}
	m.containers[id] = c
}

func (m *Manager) get(id string) (*Container, error) {
	if err := ValidateID("container_id", id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, ErrNotFound)
	}
	if c == nil {
		return nil, fmt.Errorf("container %q is being created or deleted: %w", id, ErrWrongState)
	}
	return c, nil
}

// Start lets the container's init run its program.
func (m *Manager) Start(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return fmt.Errorf("start container %q: %w: already started", id, ErrWrongState)
	}
	if c.init.exited() {
		return fmt.Errorf("start container %q: %w: its init process has exited", id, ErrWrongState)
	}
	if _, err := m.run(libct.OpStart, id); err != nil {
		return fmt.Errorf("start container %q: %w", id, err)
	}
	c.started = true
	m.log.Info("container started", "container", id)
	return nil
}

// ExecRequest describes a process to run in a running container.
type ExecRequest struct {
	ContainerID, ExecID string
	Process             *specs.Process // decoded at the RPC edge
	Stdin               bool
	TTYWidth, TTYHeight uint32
	// Admit, if set, records the policy's admission of the process once it
	// runs; an error kills it again.
	Admit func() error
}

// Exec starts an additional process in a running container.
func (m *Manager) Exec(ctx context.Context, req ExecRequest) (int, error) {
	c, err := m.get(req.ContainerID)
	if err != nil {
		return 0, err
	}
	if err := ValidateID("exec_id", req.ExecID); err != nil {
		return 0, err
	}
	spec := req.Process
	if err := checkExecProcess(spec); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || c.init.exited() {
		return 0, fmt.Errorf("exec in container %q: %w: the container is not running", req.ContainerID, ErrWrongState)
	}
	if _, ok := c.execs[req.ExecID]; ok {
		return 0, fmt.Errorf("exec %q in container %q: %w", req.ExecID, req.ContainerID, ErrExists)
	}
	if err := c.makeRoomForExec(m.cfg.Limits, m.cfg.ExecDropped); err != nil {
		return 0, err
	}
	p, err := prepareIO(spec.Terminal, req.Stdin, m.cfg.OutputLimit)
	if err != nil {
		return 0, err
	}
	p.id = req.ExecID
	// The helper keeps the container's no_new_privileges for the process, whatever its
	// request says (the policy refuses such a request too).
	lreq := m.request(libct.OpExec, req.ContainerID)
	lreq.Process = spec
	lreq.ConsoleWidth, lreq.ConsoleHeight = consoleSize(req.TTYWidth, req.TTYHeight)
	res, err := m.cfg.Libct.Run(lreq, p.passTo(&lreq)...)
	if err != nil {
		p.closeIO()
		if libct.IsKind(err, libct.KindInvalid) {
			return 0, fieldErr("process_json", "%v", err)
		}
		return 0, fmt.Errorf("exec %q in container %q: %w", req.ExecID, req.ContainerID, err)
	}
	if err := p.started(res.Pid); err != nil {
		_ = p.proc.Kill()
		p.closeIO()
		return 0, fmt.Errorf("exec %q in container %q: %w", req.ExecID, req.ContainerID, err)
	}
	m.waiting.add(p)
	if req.Admit != nil {
		if err := req.Admit(); err != nil {
			_ = p.proc.Kill()
			_, _ = p.Wait(context.WithoutCancel(ctx))
			p.closeIO()
			return 0, fmt.Errorf("admit exec %q in container %q: %w", req.ExecID, req.ContainerID, err)
		}
	}
	c.execs[req.ExecID] = p
	m.log.Info("process started", "container", req.ContainerID, "exec", req.ExecID, "pid", p.pid)
	return p.pid, nil
}

// Process finds a container's init (execID "") or exec'd process.
func (m *Manager) Process(containerID, execID string) (*Process, error) {
	c, err := m.get(containerID)
	if err != nil {
		return nil, err
	}
	if execID == "" {
		return c.init, nil
	}
	if err := ValidateID("exec_id", execID); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %q in container %q: %w", execID, containerID, ErrNotFound)
	}
	return p, nil
}

// Wait waits for a process to exit.
func (m *Manager) Wait(ctx context.Context, containerID, execID string) (ExitStatus, error) {
	p, err := m.Process(containerID, execID)
	if err != nil {
		return ExitStatus{}, err
	}
	return p.Wait(ctx)
}

// Signal sends sig to a process; all (init only) signals every process of
// the container. A process that has exited is ErrNotFound.
func (m *Manager) Signal(ctx context.Context, containerID, execID string, sig int, all bool) error {
	if sig <= 0 || sig > 64 {
		return fieldErr("signal", "%d is not a signal number (1-64)", sig)
	}
	p, err := m.Process(containerID, execID)
	if err != nil {
		return err
	}
	if p.exited() {
		// containerd's answer for a finished process, which the host takes as "stopped".
		return fmt.Errorf("signal process %d: it has exited: %w", p.pid, ErrNotFound)
	}
	if all {
		if execID != "" {
			return fieldErr("all", "only for the init process")
		}
		c, err := m.get(containerID)
		if err != nil {
			return err
		}
		res, err := m.run(libct.OpProcesses, c.id)
		pids := res.Pids
		if err != nil {
			return fmt.Errorf("list processes of %q: %w", containerID, err)
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.Signal(sig))
		}
		return nil
	}
	if err := p.proc.Signal(unix.Signal(sig)); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signal process %d: it has exited: %w", p.pid, ErrNotFound)
		}
		return fmt.Errorf("signal process %d: %w", p.pid, err)
	}
	return nil
}

// ResizeTTY sets the terminal size of a process.
func (m *Manager) ResizeTTY(ctx context.Context, containerID, execID string, width, height uint32) error {
	p, err := m.Process(containerID, execID)
	if err != nil {
		return err
	}
	return p.resize(width, height)
}

// WriteStdin writes to a process's stdin.
func (m *Manager) WriteStdin(ctx context.Context, containerID, execID string, data []byte) (int, error) {
	p, err := m.Process(containerID, execID)
	if err != nil {
		return 0, err
	}
	return p.writeStdin(ctx, data)
}

// CloseStdin closes a process's stdin.
func (m *Manager) CloseStdin(ctx context.Context, containerID, execID string) error {
	p, err := m.Process(containerID, execID)
	if err != nil {
		return err
	}
	return p.closeStdin()
}

// Delete kills what still runs in the container and removes its
// processes, cgroup, state, mounts and dm-verity device.
func (m *Manager) Delete(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.containers[id] = nil // reserved until the teardown is done
	m.mu.Unlock()
	defer m.release(id, nil)

	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	// Killing the init of a container with a PID namespace of its own kills all its
	// processes (the kernel's rule, and the loop below kills the init); without one, the
	// helper kills every process of the container's cgroup, as libcontainer does.
	if c.sharedPID && !c.init.exited() {
		if err := m.killAll(id); err != nil {
			errs = append(errs, fmt.Errorf("kill container: %w", err))
		}
	}
	procs := append([]*Process{c.init}, mapValues(c.execs)...)
	for _, p := range procs {
		if !p.exited() {
			_ = p.proc.Kill()
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if _, err := p.Wait(wctx); err != nil {
			errs = append(errs, fmt.Errorf("wait for process %d: %w", p.pid, err))
		}
		cancel()
		p.closeIO()
	}
	if _, err := m.run(libct.OpDestroy, id); err != nil {
		errs = append(errs, err)
	}
	if err := c.undo.run(); err != nil {
		errs = append(errs, err)
	}
	m.log.Info("container deleted", "container", id, "errors", len(errs))
	m.mu.Lock()
	idle := len(m.containers) == 1 // only this one, still reserved
	m.mu.Unlock()
	if idle {
		m.releaseMemoryWhenIdle()
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete container %q: %w", id, errors.Join(errs...))
	}
	return nil
}

// IdleRelease is how long the agent must have had no container before it
// returns freed memory to the guest.
const IdleRelease = time.Second

// releaseMemoryWhenIdle hands the memory of the last container back to
// the guest once the agent stayed without containers for IdleRelease: the
// agent idles between workloads for long stretches, and a forced
// collection is too slow to run on every delete.
func (m *Manager) releaseMemoryWhenIdle() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.idleTimer != nil {
		m.idleTimer.Stop()
	}
	m.idleTimer = time.AfterFunc(IdleRelease, func() {
		m.mu.Lock()
		idle := len(m.containers) == 0
		m.mu.Unlock()
		if idle {
			debug.FreeOSMemory()
		}
	})
}

func mapValues(m map[string]*Process) []*Process {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*Process, 0, len(m))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// Info describes a container.
type Info struct {
	ID      string
	Status  string // created, running, stopped
	Pid     int
	Created time.Time
	ExecIDs []string
}

func (c *Container) info() Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := "created"
	switch {
	case c.init.exited():
		st = "stopped"
	case c.started:
		st = "running"
	}
	ids := make([]string, 0, len(c.execs))
	for id := range c.execs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return Info{ID: c.id, Status: st, Pid: c.init.pid, Created: c.created, ExecIDs: ids}
}

// State describes one container.
func (m *Manager) State(ctx context.Context, id string) (Info, error) {
	c, err := m.get(id)
	if err != nil {
		return Info{}, err
	}
	return c.info(), nil
}

// List describes all containers, sorted by ID.
func (m *Manager) List(ctx context.Context) []Info {
	m.mu.Lock()
	cs := make([]*Container, 0, len(m.containers))
	for _, c := range m.containers {
		if c != nil {
			cs = append(cs, c)
		}
	}
	m.mu.Unlock()
	out := make([]Info, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.info())
	}
	slices.SortFunc(out, func(a, b Info) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

// Stats reads the container's cgroup statistics.
func (m *Manager) Stats(ctx context.Context, id string) (*libct.Stats, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	res, err := m.run(libct.OpStats, c.id)
	if err != nil {
		return nil, fmt.Errorf("stats of container %q: %w", id, err)
	}
	if res.Stats == nil {
		return nil, fmt.Errorf("stats of container %q: the helper sent none", id)
	}
	return res.Stats, nil
}

// consoleSize is a terminal size for the helper: 0x0 keeps the process's consoleSize.
func consoleSize(width, height uint32) (uint16, uint16) {
	if width == 0 || height == 0 {
		return 0, 0
	}
	return uint16(min(width, 0xffff)), uint16(min(height, 0xffff))
}

// Close deletes every container and closes every layer (agent shutdown).
// It refuses new creates and waits (until ctx ends) for those in progress,
// whose caller may have gone, so that none outlives it.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	created := make(chan struct{})
	go func() { m.creating.Wait(); close(created) }()
	var errs []error
	select {
	case <-created:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("wait for creates in progress: %w", ctx.Err()))
	}
	for _, info := range m.List(ctx) {
		if err := m.Delete(ctx, info.ID); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := m.closeUnusedLayers(); err != nil {
		errs = append(errs, err)
	}
	if err := m.closePod(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := m.closeEmptyDirs(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
