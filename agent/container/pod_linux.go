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
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"confguest/agent/childexit"
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

// holderUID is the user the holder runs as once set up (nobody): the containers of the pod
// see it as PID 1 of their PID namespace, and it must offer them nothing.
const holderUID = 65534

// RunHolder is the pod's namespace holder. It never returns: it brings the loopback
// interface of its network namespace up, gives up everything else (it chroots into its
// working directory, an empty one, and becomes an unprivileged user without capabilities,
// so a container that can ptrace PID 1 of the pod's PID namespace finds neither the guest's
// files nor privileges there), says so on stdout, then reaps children until it is killed
// (SIGKILL from the agent; as PID 1 of its namespace it ignores every other signal).
func RunHolder() {
	signal.Ignore()
	children := make(chan os.Signal, 1)
	signal.Notify(children, unix.SIGCHLD)
	if err := setUpHolder(); err != nil {
		fmt.Fprintf(os.Stdout, "%v\n", err)
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

// setUpHolder brings lo up, then drops to an empty root and an unprivileged user.
func setUpHolder() error {
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("bring the pod's loopback interface up: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the holder's empty directory: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Setgroups(nil); err != nil {
		return fmt.Errorf("drop groups: %w", err)
	}
	if err := unix.Setresgid(holderUID, holderUID, holderUID); err != nil {
		return fmt.Errorf("set gid: %w", err)
	}
	// Leaving uid 0 clears the permitted and effective capabilities.
	if err := unix.Setresuid(holderUID, holderUID, holderUID); err != nil {
		return fmt.Errorf("set uid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return nil
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
	root := filepath.Join(dir, "root") // the holder's, empty
	if err := os.Mkdir(root, 0o500); err != nil {
		return nil, err
	}
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
		Path: self, Args: []string{filepath.Base(self), HolderArg}, Dir: root,
		Stdout: w, Env: []string{},
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
	go func() {
		childexit.Await(cmd.Process.Pid) // the holder lives as long as the pod: no thread waits with it
		cmd.Wait()
		close(p.exited)
	}()
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

// podNamespaceIndexes returns where spec lists each of the pod namespace types (the
// container joins the pod's in their place); each must be listed, without a path (checkSpec
// refused host paths before).
func podNamespaceIndexes(spec *specs.Spec, types []specs.LinuxNamespaceType) (map[specs.LinuxNamespaceType]int, error) {
	idx := map[specs.LinuxNamespaceType]int{}
	for _, t := range types {
		i := slices.IndexFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == t })
		if i < 0 {
			return nil, fieldErr("pod_namespaces", "joins the pod's %s namespace, but spec.linux.namespaces lists no %s namespace", t, t)
		}
		idx[t] = i
	}
	return idx, nil
}

// PodNetNamespace returns the path of the pod's network namespace (ConfigureNetwork moves
// the pod's interface there), creating the pod's namespaces if no container did yet.
func (m *Manager) PodNetNamespace() (string, error) {
	paths, err := m.podNamespaces([]specs.LinuxNamespaceType{specs.NetworkNamespace})
	if err != nil {
		return "", err
	}
	return paths[specs.NetworkNamespace], nil
}
