package shim

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
	"confguest/hostside/podnet"
	"confguest/hostside/vmm"
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
		if err := checkSandboxNamespaces(r.ID, spec); err != nil {
			return 0, err
		}
		if err := s.bootPod(ctx, r.ID, r.Bundle, spec, nil); err != nil {
			return 0, err
		}
		c.sandbox = true
		pid = uint32(s.pod.guest.VMMPID())
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
	var disk launcher.Disk
	var podNS []specs.LinuxNamespaceType
	vols := &containerVolumes{}
	src := image.Source{Kind: image.Dir, Ref: rootfs}
	if s.pod == nil {
		if ctype == containerTypeContainer {
			return 0, fmt.Errorf("container %s: its pod sandbox %s does not run in this shim: %w",
				r.ID, spec.Annotations[AnnotationSandboxID], errPrecondition)
		}
		// A container of its own (ctr run): boot a VM with its disk attached.
		err := s.bootPod(ctx, r.ID, r.Bundle, spec, func(sb *launcher.Sandbox) ([]byte, error) {
			disk, err = sb.BuildDisk(ctx, src)
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
				s.closePod(ctx)
			}
		}()
	} else {
		// A container of a CRI pod joins the pod's namespaces in the guest, as it joins
		// the sandbox's under runc; in the pod's UTS namespace it sets the pod's hostname.
		if podNS, err = podNamespaces(r.ID, spec, s.pod.guest.VMMPID()); err != nil {
			return 0, err
		}
		if vols, err = guestVolumes(r.ID, spec, s.pod.defaults != nil); err != nil {
			return 0, err
		}
		// A volume in place of a mount of the guest spec (the pod's shared /dev/shm).
		gspec.Mounts = slices.DeleteFunc(gspec.Mounts, func(m specs.Mount) bool {
			return slices.ContainsFunc(vols.volumes, func(v *agentv1.Volume) bool { return v.GetDestination() == m.Destination })
		})
		if slices.Contains(podNS, specs.UTSNamespace) && gspec.Hostname == "" {
			gspec.Hostname = s.pod.hostname
		}
		withPodSysctls(gspec, s.pod.sysctls, podNS)
		// A rootfs identical to an earlier container's reuses that disk (Guest.AddDisk).
		disk, err = s.pod.guest.AddDisk(ctx, src)
		if err != nil {
			return 0, err
		}
		if d := s.pod.defaults; d != nil {
			commit, err := d.admit(ctx, s.pod.guest, r.ID, containerEntry(r.ID, disk.Verity.RootHash, gspec, r.Stdin != "", podNS, vols.volumes))
			if err != nil {
				return 0, err
			}
			defer func() {
				if retErr != nil {
					d.revert(context.WithoutCancel(ctx), s.pod.guest)
				} else {
					commit()
				}
			}()
		}
	}
	if disk.Attestation, err = rootfsAttestation(spec, disk.Verity.RootHash); err != nil {
		return 0, err
	}
	if _, ok := spec.Annotations[AnnotationRootfsAttestation]; ok && disk.Attestation == nil {
		log.G(ctx).WithField("id", r.ID).WithField("root_hash", disk.Verity.RootHash).
			Warn("no envelope of " + AnnotationRootfsAttestation + " signs this container's disk")
	}
	g := s.pod.guest
	pid, err := g.CreatePodContainer(ctx, r.ID, disk, gspec, launcher.Stdio{Stdin: r.Stdin != ""}, launcher.PodContainer{Namespaces: podNS, Volumes: vols.volumes})
	if err != nil {
		return 0, fmt.Errorf("in the guest: %w", err)
	}
	st, err := openStreams(s.ctx, g, c.init.ref(), c.init.paths)
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		g.Delete(dctx, r.ID)
		cancel()
		return 0, err
	}
	c.init.streams = st
	if len(vols.refreshed) > 0 {
		rctx, cancel := context.WithCancel(s.ctx)
		c.stopRefresh = cancel
		go refreshVolumes(rctx, g, r.ID, vols.refreshed, volumeWakeups(rctx, &s.volumes, r.ID, vols.refreshed))
	}
	if len(vols.readBack) > 0 {
		c.init.readBack = func() {
			rctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			defer cancel()
			readBack(rctx, g, r.ID, vols.readBack)
		}
	}
	return pid, nil
}

// AnnotationRootfsAttestation is the annotation (of the pod or the container) that carries
// the DSSE envelopes vouching for containers' disks, for policy entries that pin the rootfs
// by signer: base64 (standard encoding) of each envelope, separated by commas. A container
// gets the one whose statement signs its disk's root hash (the shim builds the disk from the
// image as confguest image attest does); the agent verifies it.
const AnnotationRootfsAttestation = "confguest.io/rootfs-attestation"

// rootfsAttestation is the envelope of spec's AnnotationRootfsAttestation that signs the
// disk with root hash rootHash, or nil.
func rootfsAttestation(spec *specs.Spec, rootHash string) ([]byte, error) {
	v, ok := spec.Annotations[AnnotationRootfsAttestation]
	if !ok {
		return nil, nil
	}
	var envs [][]byte
	for i, part := range strings.Split(v, ",") {
		env, err := base64.StdEncoding.DecodeString(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("annotation %s: envelope %d: not base64 (encode each envelope with base64 -w0): %w: %w", AnnotationRootfsAttestation, i, err, errInvalid)
		}
		envs = append(envs, env)
	}
	return image.SelectAttestation(envs, rootHash), nil
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

// bootPod boots the pod's VM, owned by container owner, whose spec is spec, sized from
// the pod's limits (Config.podSize). prepare runs
// between creating the sandbox and booting it (to build disks attached at boot) and
// returns the default policy of a single container; it is nil for a CRI pod sandbox. The
// pod's policy (its annotation, else that default, else for a CRI pod podBasePolicy) is
// what the VM boots with: the launcher installs it before anything else and checks the
// agent's hash and, under SEV-SNP, its binding to HOST_DATA. Called with s.mu held.
func (s *Service) bootPod(ctx context.Context, owner, bundle string, spec *specs.Spec, prepare func(*launcher.Sandbox) ([]byte, error)) error {
	doc, err := podPolicy(spec)
	if err != nil {
		return err
	}
	named := doc != nil
	sysctls, err := podSysctls(owner, spec)
	if err != nil {
		return err
	}
	var defaults *podDefault
	if doc == nil && prepare == nil {
		// A CRI pod naming no policy: the base, replaced as its containers are created.
		doc, defaults = []byte(podBasePolicy), &podDefault{}
	}
	limits, err := limitsOf(spec, prepare == nil)
	if err != nil {
		return err
	}
	o := s.cfg.launcherOptions(VMName(bundle), "")
	o.Progress = logWriter{ctx}
	var how string
	o.CPUs, o.MemoryMiB, how = s.cfg.podSize(limits)
	log.G(ctx).WithField("id", owner).Info(how)
	var tap *podnet.Tap
	if ns := podNetNamespace(spec); ns != "" && prepare == nil {
		// A CRI pod with a network of its own: its CNI interface goes into the VM.
		if tap, err = podnet.Attach(ns); err != nil {
			return fmt.Errorf("pod sandbox %s: carry the pod's network into its VM: %w", owner, err)
		}
		o.NICs = []vmm.NIC{{Tap: tap.File, MAC: tap.Interface.MAC.String()}}
	}
	closeTap := func() {
		if tap != nil {
			if err := tap.Close(); err != nil {
				log.G(ctx).WithError(err).Warn("remove the pod's tap")
			}
		}
	}
	sb, err := launcher.New(ctx, o)
	if err != nil {
		closeTap()
		return fmt.Errorf("prepare the pod VM: %w", err)
	}
	if prepare != nil {
		def, err := prepare(sb)
		if err != nil {
			sb.Close(context.WithoutCancel(ctx))
			closeTap()
			return err
		}
		if doc == nil {
			doc = def
		}
	}
	g, err := sb.Boot(ctx, doc) // HOST_DATA of an SEV-SNP launch is the policy's SHA-256
	if err == nil && tap != nil {
		// The policy decides whether the pod may have a network (agent.pod_network).
		err = g.ConfigureNetwork(ctx, tap.Request())
	}
	if err != nil {
		sb.Close(context.WithoutCancel(ctx))
		closeTap()
		if named {
			return fmt.Errorf("boot the pod VM under its policy (%s): %w", AnnotationPolicy, err)
		}
		return fmt.Errorf("boot the pod VM: %w", err)
	}
	s.pod = &pod{guest: g, owner: owner, defaults: defaults, hostname: spec.Hostname, sysctls: sysctls, tap: tap}
	go s.watchVM(g)
	return nil
}

// watchVM ends every process of the pod when its VM exits unexpectedly, so containerd
// sees the exits instead of waiting forever.
func (s *Service) watchVM(g *launcher.Guest) {
	<-g.Done()
	s.exitAll(nil)
}

// exitAll reports every process but except that has not exited as killed: the pod's VM is
// gone.
func (s *Service) exitAll(except *process) {
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
		if p != except {
			s.exit(p, 128+uint32(syscall.SIGKILL), time.Now())
		}
	}
}

// closePod shuts the VM down (killing it if it does not power off) and removes its run
// directory; what went wrong is logged, as the VM is gone either way. Called with s.mu held.
func (s *Service) closePod(ctx context.Context) {
	if s.pod == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	err := s.pod.guest.Close(cctx)
	if s.pod.tap != nil {
		// After the VMM, which held the tap too.
		if terr := s.pod.tap.Close(); terr != nil {
			log.G(ctx).WithError(terr).Warn("remove the pod's tap")
		}
	}
	s.pod = nil
	if err != nil {
		log.G(ctx).WithError(err).Warn("stop the pod VM")
	}
}
