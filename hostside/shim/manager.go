package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/protobuf"
	cshim "github.com/containerd/containerd/runtime/v2/shim"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/hostside/launcher"
)

// CRI annotations that place a container in a pod.
const (
	AnnotationContainerType = "io.kubernetes.cri.container-type"
	AnnotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	containerTypeSandbox    = "sandbox"
	containerTypeContainer  = "container"
)

// readBundleSpec reads config.json of the bundle at dir.
func readBundleSpec(dir string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read bundle spec: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode bundle spec %s: %w", filepath.Join(dir, "config.json"), err)
	}
	return &s, nil
}

// groupID is the pod a container belongs to: its sandbox ID for a CRI container, else its
// own ID (a sandbox container, or a single container from ctr).
func groupID(id string, s *specs.Spec) string {
	if s != nil && s.Annotations[AnnotationContainerType] == containerTypeContainer {
		if sb := s.Annotations[AnnotationSandboxID]; sb != "" {
			return sb
		}
	}
	return id
}

// VMName is the launcher name of the VM owned by the container whose bundle is at bundle
// (containerd's <state>/io.containerd.runtime.v2.task/<namespace>/<id>, unique per
// containerd, namespace and container): short, and fixed, so the delete subcommand finds
// the VM after a crash.
func VMName(bundle string) string {
	h := sha256.Sum256([]byte(filepath.Clean(bundle)))
	return "pod-" + hex.EncodeToString(h[:12])
}

// shimDialTimeout bounds how long StartShim waits to connect to the shim of a pod.
const shimDialTimeout = 5 * time.Second

// shimListening reports whether a process listens on the unix socket of a shim address.
// Only a refused connection (or no socket file) proves the socket stale. containerd's
// CanConnect gives up after 100 ms, which a loaded machine exceeds: StartShim then took
// the live shim of a pod for a crashed one, removed its socket and started a second shim
// without the pod's VM, so the pod's containers failed ("does not run in this shim") and
// its VM was orphaned. A dial that neither connects nor is refused within the timeout
// counts as listening: a wrong "listening" fails one create, a wrong "stale" loses a pod.
func shimListening(address string, timeout time.Duration) bool {
	conn, err := cshim.AnonDialer(address, timeout)
	if err == nil {
		conn.Close()
		return true
	}
	return !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, fs.ErrNotExist)
}

// StartShim is the shim's start subcommand: it starts the long-running shim for the pod of
// this container, or returns the address of the one already serving that pod.
func (s *Service) StartShim(ctx context.Context, opts cshim.StartOpts) (_ string, retErr error) {
	bundle, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("bundle directory: %w", err)
	}
	spec, err := readBundleSpec(bundle)
	if err != nil {
		return "", err
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", fmt.Errorf("start shim: %w", err)
	}
	address, err := cshim.SocketAddress(ctx, opts.Address, groupID(opts.ID, spec))
	if err != nil {
		return "", fmt.Errorf("shim socket address: %w", err)
	}
	socket, err := cshim.NewSocket(address)
	if err != nil {
		if !cshim.SocketEaddrinuse(err) {
			return "", fmt.Errorf("create shim socket: %w", err)
		}
		// Another container of this pod: its shim serves this one too.
		if shimListening(address, shimDialTimeout) {
			if err := cshim.WriteAddress("address", address); err != nil {
				return "", fmt.Errorf("write shim address: %w", err)
			}
			return address, nil
		}
		// A socket left by a shim that crashed.
		if err := cshim.RemoveSocket(address); err != nil {
			return "", fmt.Errorf("remove stale shim socket: %w", err)
		}
		if socket, err = cshim.NewSocket(address); err != nil {
			return "", fmt.Errorf("create shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			cshim.RemoveSocket(address)
		}
	}()
	if err := cshim.WriteAddress("address", address); err != nil {
		return "", fmt.Errorf("write shim address: %w", err)
	}
	f, err := socket.File()
	if err != nil {
		return "", fmt.Errorf("shim socket: %w", err)
	}
	defer f.Close()
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find shim binary: %w", err)
	}
	args := []string{"-namespace", ns, "-id", opts.ID, "-address", opts.Address}
	if opts.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = bundle
	cmd.Env = os.Environ()
	// Its own process group: signals to containerd's group do not reach the pod.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.ExtraFiles = []*os.File{f} // fd 3: the ttrpc socket
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start shim: %w", err)
	}
	go cmd.Wait()
	return address, nil
}

// Cleanup is the shim's delete subcommand, which containerd runs when the shim is gone
// (crashed or killed) or a create failed: it stops the pod's VM if this container owns it,
// removes its run directory (sockets, disks, console log), unmounts the bundle rootfs and
// removes a stale shim socket.
func (s *Service) Cleanup(ctx context.Context) (*taskapi.DeleteResponse, error) {
	bundle, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("bundle directory: %w", err)
	}
	spec, serr := readBundleSpec(bundle)
	if serr != nil {
		log.G(ctx).WithError(serr).Warn("cleanup without the bundle spec")
	}
	group := groupID(s.id, spec)
	if group == s.id {
		// This container owns its VM (a pod sandbox or a single container).
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := launcher.Stop(sctx, s.cfg.RunDir, VMName(bundle))
		cancel()
		if err != nil && !isNoGuest(err) {
			log.G(ctx).WithError(err).Warn("cleanup: stop VM")
		}
	}
	if err := mount.UnmountAll(filepath.Join(bundle, "rootfs"), 0); err != nil {
		log.G(ctx).WithError(err).Warn("cleanup: unmount rootfs")
	}
	if address, err := cshim.ReadAddress(filepath.Join(bundle, "address")); err == nil && !shimListening(address, shimDialTimeout) {
		cshim.RemoveSocket(address)
	}
	return &taskapi.DeleteResponse{
		ExitedAt:   protobuf.ToTimestamp(time.Now()),
		ExitStatus: 128 + uint32(syscall.SIGKILL),
	}, nil
}
