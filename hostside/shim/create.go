package shim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
)

// Create creates a container: for the first container of a pod it boots the VM.
func (s *Service) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	pid, err := s.create(ctx, r)
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", r.ID).Error("create")
		return nil, errdefs.ToGRPC(err)
	}
	return &taskapi.CreateTaskResponse{Pid: pid}, nil
}

func (s *Service) create(ctx context.Context, r *taskapi.CreateTaskRequest) (uint32, error) {
	if s.cfgErr != nil {
		return 0, fmt.Errorf("%w: %w", s.cfgErr, errPrecondition)
	}
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return 0, fmt.Errorf("checkpoint and restore: %w", errNotImpl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.containers[r.ID]; ok {
		return 0, fmt.Errorf("container %s: %w", r.ID, errExists)
	}
	spec, err := readBundleSpec(r.Bundle)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", err, errInvalid)
	}
	paths := stdioPaths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	c := &container{id: r.ID, bundle: r.Bundle, init: newProcess(r.ID, "", paths), execs: map[string]*process{}}
	ctype := spec.Annotations[AnnotationContainerType]
	var pid uint32
	switch {
	case ctype == containerTypeSandbox:
		if s.pod != nil {
			return 0, fmt.Errorf("pod sandbox %s: this shim already runs a VM for %s: %w", r.ID, s.pod.owner, errExists)
		}
		if err := s.bootPod(ctx, r.ID, r.Bundle, spec, nil); err != nil {
			return 0, err
		}
		c.sandbox = true
		pid = uint32(s.pod.sb.VM.PIDs()[len(s.pod.sb.VM.PIDs())-1])
	default:
		pid, err = s.createInGuest(ctx, r, spec, c, ctype)
		if err != nil {
			return 0, err
		}
	}
	c.init.pid = pid
	s.containers[r.ID] = c
	s.publish(topicCreate, &eventsapi.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs, Pid: pid,
		IO: &eventsapi.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return pid, nil
}

// createInGuest builds the container's rootfs disk from the bundle rootfs, attaches it (at
// boot for the first container of a pod) and creates the container in the guest. Called
// with s.mu held.
func (s *Service) createInGuest(ctx context.Context, r *taskapi.CreateTaskRequest, spec *specs.Spec, c *container, ctype string) (_ uint32, retErr error) {
	gspec, err := guestSpec(spec, r.Terminal)
	if err != nil {
		return 0, err
	}
	rootfs, unmount, err := mountRootfs(r)
	if err != nil {
		return 0, err
	}
	defer unmount()
	var (
		disk   image.Disk
		serial string
	)
	if s.pod == nil {
		if ctype == containerTypeContainer {
			return 0, fmt.Errorf("container %s: its pod sandbox %s does not run in this shim: %w",
				r.ID, spec.Annotations[AnnotationSandboxID], errPrecondition)
		}
		// A container of its own (ctr run): boot a VM with its disk attached.
		err := s.bootPod(ctx, r.ID, r.Bundle, spec, func(sb *launcher.Sandbox) ([]byte, error) {
			disk, serial, err = sb.BuildDisk(ctx, image.Source{Kind: image.Dir, Ref: rootfs})
			if err != nil {
				return nil, err
			}
			return defaultPolicy(disk.Verity.RootHash, gspec, r.Stdin != "")
		})
		if err != nil {
			return 0, err
		}
		defer func() {
			if retErr != nil {
				s.closePod(context.WithoutCancel(ctx))
			}
		}()
	} else {
		disk, serial, err = s.hotAddDisk(ctx, rootfs)
		if err != nil {
			return 0, err
		}
		if d := s.pod.defaults; d != nil {
			commit, err := d.admit(ctx, s.pod.sb.Agent, containerEntry(r.ID, disk.Verity.RootHash, gspec, r.Stdin != ""))
			if err != nil {
				return 0, err
			}
			defer func() {
				if retErr != nil {
					d.revert(context.WithoutCancel(ctx), s.pod.sb.Agent)
				} else {
					commit()
				}
			}()
		}
	}
	sj, err := json.Marshal(gspec)
	if err != nil {
		return 0, fmt.Errorf("encode guest spec: %w", err)
	}
	v := disk.Verity
	resp, err := createContainer(ctx, s.pod.sb.Agent, &agentv1.CreateContainerRequest{
		ContainerId: r.ID,
		SpecJson:    sj,
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{
			Serial: serial,
			FsType: "erofs",
			Verity: &agentv1.Verity{
				RootHash: v.RootHash, Salt: v.Salt, HashOffset: v.HashOffset, DataBlocks: v.DataBlocks,
				DataBlockSize: v.DataBlockSize, HashBlockSize: v.HashBlockSize, HashAlgorithm: v.Algorithm,
			},
		}}},
		Stdio: &agentv1.StdioOptions{Stdin: r.Stdin != ""},
	})
	if err != nil {
		return 0, fmt.Errorf("create container %s in the guest: %w", r.ID, err)
	}
	st, err := openStreams(s.ctx, s.pod.sb.Agent, c.init.ref(), c.init.paths)
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		s.pod.sb.Agent.DeleteContainer(dctx, &agentv1.DeleteContainerRequest{ContainerId: r.ID})
		cancel()
		return 0, err
	}
	c.init.streams = st
	return resp.GetPid(), nil
}

// AnnotationPolicy is the pod annotation that carries the agent policy: base64 (standard
// encoding) of the JSON document. containerd passes it to the shim when the runtime
// handler's pod_annotations list it.
const AnnotationPolicy = "confguest.io/policy"

// podPolicy is the policy document of the pod whose sandbox (or single container) has
// spec, or nil when it names none.
func podPolicy(spec *specs.Spec) ([]byte, error) {
	v, ok := spec.Annotations[AnnotationPolicy]
	if !ok {
		return nil, nil
	}
	doc, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return nil, fmt.Errorf("annotation %s: not base64 (encode the policy file with base64 -w0): %w: %w", AnnotationPolicy, err, errInvalid)
	}
	if len(doc) == 0 {
		return nil, fmt.Errorf("annotation %s: empty policy: %w", AnnotationPolicy, errInvalid)
	}
	return doc, nil
}

// mountRootfs mounts the rootfs containerd prepared (the snapshot's mounts) at
// <bundle>/rootfs, or uses that directory as it is when there are no mounts.
func mountRootfs(r *taskapi.CreateTaskRequest) (string, func(), error) {
	dir := filepath.Join(r.Bundle, "rootfs")
	if len(r.Rootfs) == 0 {
		return dir, func() {}, nil
	}
	var ms []mount.Mount
	for _, m := range r.Rootfs {
		ms = append(ms, mount.Mount{Type: m.Type, Source: m.Source, Options: m.Options})
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", nil, fmt.Errorf("rootfs mount point: %w", err)
	}
	if err := mount.All(ms, dir); err != nil {
		return "", nil, fmt.Errorf("mount rootfs of %s: %w", r.ID, err)
	}
	return dir, func() { mount.UnmountAll(dir, 0) }, nil
}

// bootPod boots the pod's VM, owned by container owner, whose spec is spec. prepare runs
// between creating the sandbox and booting it (to build disks attached at boot) and
// returns the default policy of a single container; it is nil for a CRI pod sandbox. The
// pod's policy (its annotation, else that default, else for a CRI pod podBasePolicy) is
// installed before anything else. Called with s.mu held.
func (s *Service) bootPod(ctx context.Context, owner, bundle string, spec *specs.Spec, prepare func(*launcher.Sandbox) ([]byte, error)) error {
	doc, err := podPolicy(spec)
	if err != nil {
		return err
	}
	named := doc != nil
	var defaults *podDefault
	if doc == nil && prepare == nil {
		// A CRI pod naming no policy: the base, replaced as its containers are created.
		doc, defaults = []byte(podBasePolicy), &podDefault{}
	}
	o := s.cfg.launcherOptions(VMName(bundle), "")
	o.Policy = doc // HOST_DATA of an SEV-SNP launch is its SHA-256
	o.Progress = logWriter{ctx}
	sb, err := launcher.New(ctx, o)
	if err != nil {
		return fmt.Errorf("prepare the pod VM: %w", err)
	}
	if prepare != nil {
		def, err := prepare(sb)
		if err != nil {
			sb.Close(context.WithoutCancel(ctx))
			return err
		}
		if doc == nil {
			if s.cfg.SEVSNP {
				sb.Close(context.WithoutCancel(ctx))
				return fmt.Errorf("an SEV-SNP pod needs its policy in the %s annotation (HOST_DATA is fixed before the default policy is known): %w", AnnotationPolicy, errInvalid)
			}
			doc = def
		}
	}
	if err := sb.Boot(ctx); err != nil {
		sb.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("boot the pod VM: %w", err)
	}
	if doc != nil {
		enforced, err := installPolicy(ctx, sb.Agent, doc, named)
		if err != nil {
			sb.Close(context.WithoutCancel(ctx))
			return err
		}
		if !enforced {
			defaults = nil
		}
	}
	s.pod = &pod{sb: sb, owner: owner, defaults: defaults}
	go s.watchVM(sb)
	return nil
}

// watchVM ends every process of the pod when its VM exits unexpectedly, so containerd
// sees the exits instead of waiting forever.
func (s *Service) watchVM(sb *launcher.Sandbox) {
	<-sb.VM.Done()
	s.mu.Lock()
	var ps []*process
	for _, c := range s.containers {
		ps = append(ps, c.init)
		for _, p := range c.execs {
			ps = append(ps, p)
		}
	}
	s.mu.Unlock()
	for _, p := range ps {
		s.exit(p, 128+uint32(syscall.SIGKILL), time.Now())
	}
}

// closePod shuts the VM down and removes its run directory. Called with s.mu held.
func (s *Service) closePod(ctx context.Context) error {
	if s.pod == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := s.pod.sb.Close(cctx)
	s.pod = nil
	if err != nil {
		return fmt.Errorf("stop the pod VM: %w", err)
	}
	return nil
}

// hotAddDisk builds a disk from rootfs in the VM's run directory and hot-adds it to the
// running VM; a rootfs identical to an earlier container's reuses that disk
// (launcher.Sandbox.BuildDisk). Called with s.mu held.
func (s *Service) hotAddDisk(ctx context.Context, rootfs string) (image.Disk, string, error) {
	sb := s.pod.sb
	d, serial, err := sb.BuildDisk(ctx, image.Source{Kind: image.Dir, Ref: rootfs})
	if err != nil {
		return image.Disk{}, "", err
	}
	if err := sb.AttachDisk(ctx, serial); err != nil {
		return image.Disk{}, "", fmt.Errorf("the rootfs disk: %w", err)
	}
	return d, serial, nil
}

// createContainer is the agent's CreateContainer, retried while the guest has not yet seen
// a disk that was just hot-added (PCI hotplug completes asynchronously in the guest).
func createContainer(ctx context.Context, agent agentv1.AgentClient, req *agentv1.CreateContainerRequest) (*agentv1.CreateContainerResponse, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := agent.CreateContainer(ctx, req)
		if err == nil || status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "no disk with serial") || time.Now().After(deadline) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
