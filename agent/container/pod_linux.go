package container

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The guest's pod: the network, IPC, UTS and PID namespaces the containers of a Kubernetes
// pod share in the guest, as runc's containers share their sandbox's. The agent creates
// them with the first container that joins one: a holder process (the agent binary
// re-executed with HolderArg) is cloned into new namespaces of all four kinds, brings the
// pod's loopback interface up and stays as PID 1 of the pod's PID namespace, reaping the
// processes reparented to it, as the pause container does under runc. Its namespaces are
// bind-mounted under the state directory, so a container joins exactly these (never one
// that a reused PID would name), and the paths are set by the agent only: the host never
// names a namespace.

// HolderArg is the argument the agent binary runs as the pod's namespace holder with; the
// agent's main (and a test binary that runs containers) must call RunHolder for it.
const HolderArg = "pod-holder"

// holderReady is the line the holder writes once the pod's namespaces are set up.
const holderReady = "ready"

// holderStart bounds how long the holder may take to say it is ready.
const holderStart = 10 * time.Second

// podNamespaceKinds maps the OCI types of the pod's namespaces to their /proc/PID/ns names.
var podNamespaceKinds = map[specs.LinuxNamespaceType]string{
	specs.NetworkNamespace: "net",
	specs.IPCNamespace:     "ipc",
	specs.UTSNamespace:     "uts",
	specs.PIDNamespace:     "pid",
}

// RunHolder is the pod's namespace holder. It never returns: it brings the loopback
// interface of its network namespace up, says so on stdout, then reaps children until it
// is killed (SIGKILL from the agent; as PID 1 of its namespace it ignores every other
// signal).
func RunHolder() {
	signal.Ignore()
	children := make(chan os.Signal, 1)
	signal.Notify(children, unix.SIGCHLD)
	if err := loopbackUp(); err != nil {
		fmt.Fprintf(os.Stdout, "bring the pod's loopback interface up: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stdout, holderReady)
	os.Stdout.Close()
	for {
		for {
			pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		<-children
	}
}

// loopbackUp sets the IFF_UP flag of lo in the calling process's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("read the flags of lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// pod is the guest's pod: its holder and the bind-mounted namespace files.
type pod struct {
	dir    string // StateDir/pod: one file per namespace kind
	holder *exec.Cmd
	exited chan struct{} // closed once the holder exited and was reaped
}

// podNamespaces returns the paths of the pod's namespaces of types, creating the pod first
// if the agent has none. A pod whose holder has exited is broken: no container can join it.
func (m *Manager) podNamespaces(types []specs.LinuxNamespaceType) (map[specs.LinuxNamespaceType]string, error) {
	if len(types) == 0 {
		return nil, nil
	}
	m.podMu.Lock()
	defer m.podMu.Unlock()
	if m.pod == nil {
		p, err := startPod(filepath.Join(m.cfg.StateDir, "pod"))
		if err != nil {
			return nil, fmt.Errorf("create the pod's namespaces: %w", err)
		}
		m.pod = p
		m.log.Info("pod namespaces created", "holder_pid", p.holder.Process.Pid)
	}
	select {
	case <-m.pod.exited:
		return nil, fmt.Errorf("the pod's namespace holder has exited: %w: the pod's namespaces are gone", ErrWrongState)
	default:
	}
	paths := map[specs.LinuxNamespaceType]string{}
	for _, t := range types {
		kind, ok := podNamespaceKinds[t]
		if !ok {
			return nil, fieldErr("pod_namespaces", "a pod has no %q namespace", t)
		}
		paths[t] = filepath.Join(m.pod.dir, kind)
	}
	return paths, nil
}

// startPod starts the holder in new namespaces and bind-mounts them into dir. A failure
// leaves nothing behind.
func startPod(dir string) (_ *pod, err error) {
	var undo cleanups
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	undo.push(func() error { return os.RemoveAll(dir) })
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the agent binary: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := &exec.Cmd{
		Path: self, Args: []string{filepath.Base(self), HolderArg}, Dir: "/",
		Stdout: w, Stderr: os.Stderr, Env: []string{},
		SysProcAttr: &unix.SysProcAttr{
			Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWPID,
			Setsid:     true,
		},
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("start the holder: %w", err)
	}
	p := &pod{dir: dir, holder: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	undo.push(func() error { p.stopHolder(); return nil })
	if err := waitReady(r, p.exited); err != nil {
		return nil, err
	}
	for _, kind := range podNamespaceKinds {
		f := filepath.Join(dir, kind)
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			return nil, err
		}
		src := fmt.Sprintf("/proc/%d/ns/%s", cmd.Process.Pid, kind)
		if err := unix.Mount(src, f, "", unix.MS_BIND, ""); err != nil {
			return nil, fmt.Errorf("bind-mount the pod's %s namespace: %w", kind, err)
		}
		undo.push(func() error { return unix.Unmount(f, unix.MNT_DETACH) })
	}
	return p, nil
}

// waitReady reads the holder's first line: holderReady, or why it failed.
func waitReady(r *os.File, exited <-chan struct{}) error {
	r.SetReadDeadline(time.Now().Add(holderStart))
	line, err := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == holderReady:
		return nil
	case line != "":
		return fmt.Errorf("the holder: %s", line)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the holder did not start within %v", holderStart)
	}
	select {
	case <-exited:
		return errors.New("the holder exited at start")
	default:
		return fmt.Errorf("read from the holder: %w", err)
	}
}

// stopHolder kills the holder (and so every process left in the pod's PID namespace) and
// waits until it was reaped.
func (p *pod) stopHolder() {
	p.holder.Process.Kill()
	<-p.exited
}

// close kills the holder and removes the namespace files.
func (p *pod) close() error {
	p.stopHolder()
	var errs []error
	for _, kind := range podNamespaceKinds {
		if err := unix.Unmount(filepath.Join(p.dir, kind), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount the pod's %s namespace: %w", kind, err))
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// closePod ends the pod, if there is one (agent shutdown).
func (m *Manager) closePod(ctx context.Context) error {
	m.podMu.Lock()
	defer m.podMu.Unlock()
	if m.pod == nil {
		return nil
	}
	err := m.pod.close()
	m.pod = nil
	if err != nil {
		return fmt.Errorf("close the pod: %w", err)
	}
	return nil
}

// joinPod sets the paths of spec's namespaces of the pod types (the agent's, never the
// host's: checkSpec refused host paths before) to the pod's; each must be listed.
func joinPod(spec *specs.Spec, paths map[specs.LinuxNamespaceType]string) error {
	for t, path := range paths {
		i := -1
		for j, ns := range spec.Linux.Namespaces {
			if ns.Type == t {
				i = j
			}
		}
		if i < 0 {
			return fieldErr("pod_namespaces", "joins the pod's %s namespace, but spec.linux.namespaces lists no %s namespace", t, t)
		}
		spec.Linux.Namespaces[i].Path = path
	}
	return nil
}
