package launcher

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/image"
	"confguest/hostside/vmm"
	"confguest/hostside/vsock"
)

// Guest is a running guest: Sandbox.Boot returns it with its policy installed, Attach
// connects to one started by another process. Its methods are the operations the host
// performs on a guest; the CLI and the containerd shim both drive guests through them.
type Guest struct {
	s     *Sandbox // the sandbox that booted the guest; for an attached one, its run directory and state only
	agent agentv1.AgentClient
	vm    vmm.VM // the VM this process booted, nil for an attached guest (kept after Close)
	// installed: a policy was installed through this Guest (the next one replaces it).
	installed bool
}

// NewGuest returns a Guest that drives the agent behind agent, for a guest whose VM this
// process neither booted nor attached to (tests serve a fake agent this way).
func NewGuest(agent agentv1.AgentClient) *Guest {
	return &Guest{s: &Sandbox{}, agent: agent}
}

// Agent is the raw agent client, for calls the Guest has no method for (attestation
// reports, and tests that send the agent what the host-side code would not).
func (g *Guest) Agent() agentv1.AgentClient { return g.agent }

// Name is the guest's name.
func (g *Guest) Name() string { return g.s.name }

// Dir is the guest's run directory.
func (g *Guest) Dir() string { return g.s.dir }

// SNP is the expected SEV-SNP launch (measurement, HOST_DATA), nil without SEV-SNP.
func (g *Guest) SNP() *SNPLaunch { return g.s.snp }

// VMMPID is the process ID of the VMM, 0 when this process did not boot the guest.
func (g *Guest) VMMPID() int { return g.s.state.VMMPID }

// Done is closed when the VMM exits; nil when this process did not boot the guest.
func (g *Guest) Done() <-chan struct{} {
	if g.vm == nil {
		return nil
	}
	return g.vm.Done()
}

// Close shuts the guest down and removes its run directory (Sandbox.Close).
func (g *Guest) Close(ctx context.Context) error { return g.s.Close(ctx) }

// AddDisk builds a container rootfs disk from src (as Sandbox.BuildDisk does, sharing the
// disk of an identical image) and hot-adds it to the running VM unless it has that disk.
func (g *Guest) AddDisk(ctx context.Context, src image.Source, opts ...image.Option) (Disk, error) {
	d, err := g.s.BuildDisk(ctx, src, opts...)
	if err != nil {
		return Disk{}, err
	}
	if err := g.s.attachDisk(ctx, d.Serial); err != nil {
		return Disk{}, fmt.Errorf("the rootfs disk: %w", err)
	}
	return d, nil
}

// Stdio says which streams a process gets: stdin (fed with Streams), and a terminal of
// Width × Height when its spec asks for one.
type Stdio struct {
	Stdin         bool
	Width, Height uint32
}

func (o Stdio) message() *agentv1.StdioOptions {
	return &agentv1.StdioOptions{Stdin: o.Stdin, TtyWidth: o.Width, TtyHeight: o.Height}
}

// hotplugSettle bounds how long after a hot-add CreateContainer waits for the guest to see
// the disk (PCI hotplug completes asynchronously in the guest).
const hotplugSettle = 15 * time.Second

// CreateContainer creates container id in the guest from spec, with its rootfs on disk d
// (built by BuildDisk or AddDisk), and returns the guest PID of its init process, which
// waits for Start. A disk hot-added moments ago may not be visible in the guest yet: the
// agent's NotFound for it is retried until hotplugSettle after the hot-add. The container
// joins the guest pod's namespaces of types pod instead of its own (the containers of a
// Kubernetes pod), which spec lists without paths.
func (g *Guest) CreateContainer(ctx context.Context, id string, d Disk, spec *specs.Spec, stdio Stdio, pod ...specs.LinuxNamespaceType) (uint32, error) {
	return g.CreatePodContainer(ctx, id, d, spec, stdio, PodContainer{Namespaces: pod})
}

// PodContainer is what a container of a pod has beyond a container of its own.
type PodContainer struct {
	// Namespaces are the pod's namespaces the container joins.
	Namespaces []specs.LinuxNamespaceType
	// Volumes are the files copied in and the pod's emptyDirs it mounts.
	Volumes []*agentv1.Volume
}

// CreatePodContainer is CreateContainer for a container of a pod.
func (g *Guest) CreatePodContainer(ctx context.Context, id string, d Disk, spec *specs.Spec, stdio Stdio, pc PodContainer) (uint32, error) {
	pod := pc.Namespaces
	sj, err := json.Marshal(spec)
	if err != nil {
		return 0, fmt.Errorf("encode the spec of container %s: %w", id, err)
	}
	podNS, err := agentv1.NewPodNamespaces(pod)
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", id, err)
	}
	req := &agentv1.CreateContainerRequest{
		ContainerId: id,
		SpecJson:    sj,
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{
			Serial: d.Serial,
			FsType: "erofs",
			Verity: agentv1.NewVerity(d.Verity),
		}}},
		Stdio:         stdio.message(),
		PodNamespaces: podNS,
		Volumes:       pc.Volumes,

		RootfsAttestation: d.Attestation,
	}
	for {
		resp, err := g.agent.CreateContainer(ctx, req)
		if err == nil {
			return resp.GetPid(), nil
		}
		added := g.s.attached[d.Serial]
		if status.Code(err) != codes.NotFound || added.IsZero() || time.Since(added) > hotplugSettle {
			return 0, fmt.Errorf("create container %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("create container %s: %w", id, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// UpdateVolume replaces the content of container id's directory of host files at dest.
func (g *Guest) UpdateVolume(ctx context.Context, id, dest string, files *agentv1.Files) error {
	if _, err := g.agent.UpdateVolume(ctx, &agentv1.UpdateVolumeRequest{ContainerId: id, Destination: dest, Files: files}); err != nil {
		return fmt.Errorf("update the volume at %q of container %s: %w", dest, id, err)
	}
	return nil
}

// ReadVolume returns what container id wrote into its one-file volume at dest.
func (g *Guest) ReadVolume(ctx context.Context, id, dest string) ([]byte, error) {
	r, err := g.agent.ReadVolume(ctx, &agentv1.ReadVolumeRequest{ContainerId: id, Destination: dest})
	if err != nil {
		return nil, fmt.Errorf("read back the volume at %q of container %s: %w", dest, id, err)
	}
	return r.GetData(), nil
}

// Start starts the init process of created container id.
func (g *Guest) Start(ctx context.Context, id string) error {
	if _, err := g.agent.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// StartExec starts proc as process execID of container id and returns its guest PID.
func (g *Guest) StartExec(ctx context.Context, id, execID string, proc *specs.Process, stdio Stdio) (uint32, error) {
	pj, err := json.Marshal(proc)
	if err != nil {
		return 0, fmt.Errorf("encode process %s: %w", execID, err)
	}
	resp, err := g.agent.ExecProcess(ctx, &agentv1.ExecProcessRequest{
		ContainerId: id, ExecId: execID, ProcessJson: pj, Stdio: stdio.message(),
	})
	if err != nil {
		return 0, fmt.Errorf("exec %s in container %s: %w", execID, id, err)
	}
	return resp.GetPid(), nil
}

// ProcessRef names a container's init process (ExecID empty) or one of its exec'd processes.
type ProcessRef struct {
	ContainerID, ExecID string
}

func (r ProcessRef) message() *agentv1.ProcessRef {
	return &agentv1.ProcessRef{ContainerId: r.ContainerID, ExecId: r.ExecID}
}

// String names the process in errors.
func (r ProcessRef) String() string {
	if r.ExecID == "" {
		return "container " + r.ContainerID
	}
	return fmt.Sprintf("process %s of container %s", r.ExecID, r.ContainerID)
}

// Exit is how a process ended: its exit code (128+signal if it was killed) and when.
type Exit struct {
	Code int
	At   time.Time
}

// Wait waits until process p exited.
func (g *Guest) Wait(ctx context.Context, p ProcessRef) (Exit, error) {
	w, err := g.agent.WaitProcess(ctx, &agentv1.WaitProcessRequest{Process: p.message()})
	if err != nil {
		return Exit{}, fmt.Errorf("wait for %s: %w", p, err)
	}
	e := Exit{Code: int(w.GetExitCode()), At: time.Now()}
	if n := w.GetExitedAtUnixNano(); n > 0 {
		e.At = time.Unix(0, n)
	}
	return e, nil
}

// Signal sends sig to process p, or with all to every process of p's container.
func (g *Guest) Signal(ctx context.Context, p ProcessRef, sig uint32, all bool) error {
	if _, err := g.agent.SignalProcess(ctx, &agentv1.SignalProcessRequest{Process: p.message(), Signal: sig, All: all}); err != nil {
		return fmt.Errorf("signal %d to %s: %w", sig, p, err)
	}
	return nil
}

// Resize sets the terminal size of process p.
func (g *Guest) Resize(ctx context.Context, p ProcessRef, width, height uint32) error {
	if _, err := g.agent.ResizeTTY(ctx, &agentv1.ResizeTTYRequest{Process: p.message(), Width: width, Height: height}); err != nil {
		return fmt.Errorf("resize the terminal of %s: %w", p, err)
	}
	return nil
}

// Delete removes container id and what it holds in the guest (a created init process that
// never started is killed).
func (g *Guest) Delete(ctx context.Context, id string) error {
	if _, err := g.agent.DeleteContainer(ctx, &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// Stats returns container id's cgroup counters, if the policy allows it (agent.stats).
func (g *Guest) Stats(ctx context.Context, id string) (*agentv1.StatsResponse, error) {
	st, err := g.agent.Stats(ctx, &agentv1.StatsRequest{ContainerId: id})
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", id, err)
	}
	return st, nil
}

// Update changes the cgroup limits of container id in the guest (the agent's
// UpdateContainer: the policy must list each group the request sets in the container's
// update_resources).
func (g *Guest) Update(ctx context.Context, r *agentv1.UpdateContainerRequest) error {
	if _, err := g.agent.UpdateContainer(ctx, r); err != nil {
		return fmt.Errorf("update resources of container %s: %w", r.GetContainerId(), err)
	}
	return nil
}

// ConfigureNetwork has the agent move the guest's network device with the request's MAC
// (one of Options.NICs) into the pod's network namespace and configure it as the request
// says (agent/podnet); the policy must allow it (agent.pod_network).
func (g *Guest) ConfigureNetwork(ctx context.Context, r *agentv1.ConfigureNetworkRequest) error {
	if _, err := g.agent.ConfigureNetwork(ctx, r); err != nil {
		return fmt.Errorf("configure the pod's network interface %s (%s) in the guest: %w", r.GetInterface().GetName(), r.GetInterface().GetMac(), err)
	}
	return nil
}

// Detach releases the launcher's hold on a detached guest: the agent connection is closed,
// the VM keeps running and its run directory stays for Attach.
func (g *Guest) Detach() {
	if s := g.s; s.client != nil {
		s.client.Close()
		s.client, s.agent = nil, nil
	}
}

// Release closes the agent connection of an attached guest.
func (g *Guest) Release() { g.Detach() }

// SetContainer records the container of a long-running guest in its state file.
func (g *Guest) SetContainer(id string, cmd []string) error {
	g.s.state.ContainerID, g.s.state.Command = id, cmd
	return writeState(g.s.dir, g.s.state)
}

// Attach connects to the agent of the running guest name under base.
func Attach(ctx context.Context, base, name string) (*Guest, State, error) {
	if base == "" {
		base = DefaultRunBase()
	}
	if err := CheckName(name); err != nil {
		return nil, State{}, err
	}
	dir := filepath.Join(base, name)
	st, err := ReadState(dir)
	if err != nil {
		return nil, st, fmt.Errorf("guest %q: %w (see confguest ps)", name, ErrNoGuest)
	}
	if !st.alive() {
		cleanStale(dir)
		return nil, st, fmt.Errorf("guest %q is no longer running (its VMM exited; state cleaned up): %w", name, ErrNoGuest)
	}
	if _, err := os.Stat(st.Vsock); err != nil {
		return nil, st, fmt.Errorf("guest %q: its vsock socket is gone: %w", name, err)
	}
	// No launcher process trims a detached guest's logs while it runs; each command that
	// attaches does.
	vmm.TrimLogs(dir)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := vsock.Dial(dctx, st.Vsock, AgentPort)
	if err != nil {
		return nil, st, fmt.Errorf("guest %q: %w", name, err)
	}
	c := newAgentConn(conn)
	s := &Sandbox{dir: dir, name: name, agent: agentv1.NewAgentClient(c), client: c, state: st}
	return &Guest{s: s, agent: s.agent}, st, nil
}

// VMMDied returns an ErrVMMDied error quoting the guest console if the VMM exits within
// wait, else nil. Use it to explain a broken agent connection.
func (g *Guest) VMMDied(wait time.Duration) error {
	if g.vm == nil {
		return nil
	}
	return vmmDied(g.vm, wait)
}

func vmmDied(vm vmm.VM, wait time.Duration) error {
	select {
	case <-vm.Done():
	case <-time.After(wait):
		return nil
	}
	msg := "the guest powered off"
	tail := vm.ConsoleTail(200) // read once: the reason is looked for in it, its end is quoted
	if werr := vm.Wait(context.Background()); werr != nil {
		msg = werr.Error()
	} else if why := powerOffReason(tail); why != "" {
		msg += ": " + why
	}
	return fmt.Errorf("%w: %s\n%s", ErrVMMDied, msg, strings.Join(indent(tail[max(0, len(tail)-10):]), "\n"))
}

// powerOffReason finds in the guest console's last lines why PID 1 powered off: its last
// "confguest-init: fatal:" line, and the first line of a Go panic before it (the agent's
// crash). It returns "" when PID 1 said nothing (a requested shutdown).
func powerOffReason(lines []string) string {
	const fatal = "confguest-init: fatal: "
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.HasPrefix(lines[i], fatal) {
			continue
		}
		why := strings.TrimPrefix(lines[i], fatal)
		for _, l := range lines[:i] {
			if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
				why += " (" + l + ")"
				break
			}
		}
		return why
	}
	return ""
}

// WatchVM returns a context that is cancelled, with an ErrVMMDied cause quoting the guest
// console, if the VMM exits while the caller still needs it.
func (g *Guest) WatchVM(ctx context.Context) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancelCause(ctx)
	vm := g.vm
	if vm == nil {
		return wctx, func() { cancel(nil) }
	}
	go func() {
		select {
		case <-vm.Done():
			cancel(vmmDied(vm, 0))
		case <-wctx.Done():
		}
	}()
	return wctx, func() { cancel(nil) }
}
