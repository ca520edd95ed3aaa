package shim

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
)

// A pod in a confidential VM shares no filesystem with the host. The bind mounts that
// containerd's CRI puts in a container's bundle spec become agent volumes instead:
//   - an emptyDir (the kubelet's <root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>)
//     becomes an emptyDir of the guest's pod, named by that host path, so the containers
//     that mount the same source share one guest directory; medium Memory (the kubelet
//     mounts a tmpfs there) is a tmpfs in the guest;
//   - the files the kubelet and containerd write for a container (/etc/hosts,
//     /etc/hostname, /etc/resolv.conf, /dev/termination-log, the service-account token,
//     ConfigMap, Secret, downwardAPI and projected volumes: sources under the kubelet's
//     pods/<uid>/ or containerd's CRI sandbox directory) are copied into the guest at
//     create, within the agent's bounds (agentv1.MaxVolume*);
//   - the pod's /dev/shm (containerd's sandbox shm, which runc bind-mounts into each of
//     the pod's containers) becomes a memory emptyDir of the guest's pod named by that
//     host path, so the pod's containers share one /dev/shm as under runc (shareShm: a pod
//     under the default policy, which admits every emptyDir); under a pod's own policy
//     each container keeps the guest spec's /dev/shm tmpfs;
//   - any other bind mount (a hostPath volume, a block device) is refused, naming the
//     destination: the guest cannot reach the host's files.
// A directory of host files (a ConfigMap, Secret, projected or downwardAPI volume) is read
// again when it changes (volumeWakeups: the kubelet's atomic ..data swaps, token rotation)
// and, when its content differs from what was sent, sent again (UpdateVolume): the guest
// swaps it in atomically. A
// volume that is one file is copied once, as the kubelet updates no file mount either.
// What the container writes into its termination log (the kubelet's
// pods/<uid>/containers/<name>/<n>) is copied back to that host file when it exits.

var (
	// emptyDirSource is the kubelet's directory of an emptyDir volume.
	emptyDirSource = regexp.MustCompile(`/pods/[^/]+/volumes/kubernetes\.io~empty-dir/[^/]+$`)
	// kubeletSource is a file or directory the kubelet prepares for a container: a volume,
	// a subPath of one, its /etc/hosts or its termination log.
	kubeletSource = regexp.MustCompile(`/pods/[^/]+/(volumes|volume-subpaths|etc-hosts|containers)(/|$)`)
	// terminationLogSource is the kubelet's file for a container's termination message.
	terminationLogSource = regexp.MustCompile(`/pods/[^/]+/containers/[^/]+/[^/]+$`)
)

// criSandboxDir is the path element of containerd's CRI sandbox directories, which hold
// the pod's hosts, hostname and resolv.conf files (and its shm).
const criSandboxDir = "/io.containerd.grpc.v1.cri/sandboxes/"

// StandardVolumeDestinations are the mount destinations where the default pod policy lets
// a container take files from the host: the ones the kubelet and containerd give every
// container. Every other destination takes host files only under a pod policy that lists
// it (policy.Volume).
var StandardVolumeDestinations = []string{
	"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/termination-log",
	"/var/run/secrets/kubernetes.io/serviceaccount",
}

// TerminationLog is Kubernetes' default terminationMessagePath: the default pod policy
// lets the host read it back (policy.Volume.ReadBack).
const TerminationLog = "/dev/termination-log"

// guestVolumes translates the bind mounts of container id's bundle spec b into volumes the
// agent creates in the guest (the pod's shm too with shareShm); what fails names the
// destination and the host path.
func guestVolumes(id string, b *specs.Spec, shareShm bool) (*containerVolumes, error) {
	var out []*agentv1.Volume
	var refreshed, readBack []hostFiles
	budget := volumeBudget{entries: agentv1.MaxVolumeEntries, bytes: agentv1.MaxVolumeBytes}
	for _, m := range b.Mounts {
		if m.Type != "bind" && !slices.Contains(m.Options, "bind") && !slices.Contains(m.Options, "rbind") {
			continue // proc, sysfs, tmpfs, devpts, mqueue: the guest spec has its own
		}
		ro := slices.Contains(m.Options, "ro")
		src := filepath.Clean(m.Source)
		switch {
		case strings.Contains(src, criSandboxDir) && filepath.Base(src) == "shm":
			if shareShm {
				out = append(out, &agentv1.Volume{Destination: m.Destination, ReadOnly: ro, EmptyDir: &agentv1.EmptyDir{Name: src, Memory: true}})
			}
		case emptyDirSource.MatchString(src):
			var st unix.Statfs_t
			if err := unix.Statfs(src, &st); err != nil {
				return nil, fmt.Errorf("container %s: emptyDir at %q: %w: %w", id, m.Destination, err, errInvalid)
			}
			out = append(out, &agentv1.Volume{Destination: m.Destination, ReadOnly: ro,
				EmptyDir: &agentv1.EmptyDir{Name: src, Memory: st.Type == unix.TMPFS_MAGIC}})
		case kubeletSource.MatchString(src) || strings.Contains(src, criSandboxDir):
			es, err := budget.read(src)
			if err != nil {
				return nil, fmt.Errorf("container %s: mount at %q: copy %s into the guest: %w: %w", id, m.Destination, m.Source, err, errInvalid)
			}
			files := &agentv1.Files{Entries: es}
			out = append(out, &agentv1.Volume{Destination: m.Destination, ReadOnly: ro, Files: files})
			switch {
			case len(es) != 1 || es[0].GetPath() != "":
				refreshed = append(refreshed, hostFiles{dest: m.Destination, src: src, sent: files})
			case terminationLogSource.MatchString(src) && !ro:
				readBack = append(readBack, hostFiles{dest: m.Destination, src: src})
			}
		default:
			return nil, fmt.Errorf("container %s: mount at %q: %s is a hostPath or block volume: a pod in a confidential VM shares no files with the host, and the guest cannot take this one; use an emptyDir, a ConfigMap or a Secret: %w",
				id, m.Destination, m.Source, errInvalid)
		}
	}
	return &containerVolumes{volumes: out, refreshed: refreshed, readBack: readBack}, nil
}

// containerVolumes are the volumes of a container (guestVolumes): what the agent creates,
// the directories of host files refreshVolumes keeps current, and the termination log
// readBack copies back.
type containerVolumes struct {
	volumes   []*agentv1.Volume
	refreshed []hostFiles
	readBack  []hostFiles
}

// volumeReader is the guest call readBack makes (launcher.Guest.ReadVolume).
type volumeReader interface {
	ReadVolume(ctx context.Context, id, dest string) ([]byte, error)
}

// readBack copies what container id wrote into its files vs back to their host files (its
// termination log, which the kubelet reads once the container exited).
func readBack(ctx context.Context, g volumeReader, id string, vs []hostFiles) {
	for _, v := range vs {
		data, err := g.ReadVolume(ctx, id, v.dest)
		if err == nil {
			err = os.WriteFile(v.src, data, 0o666)
		}
		if err != nil {
			log.G(ctx).WithError(err).WithField("id", id).Warnf("copy %q back to %s", v.dest, v.src)
		}
	}
}

// volumeRefreshInterval is how often refreshVolumes reads a container's directories of
// host files again when they cannot be watched.
const volumeRefreshInterval = 2 * time.Second

// hostFiles is a directory of host files copied into a container, and what was sent last.
type hostFiles struct {
	dest, src string
	sent      *agentv1.Files
}

// volumeUpdater is the guest call refreshVolumes makes (launcher.Guest.UpdateVolume).
type volumeUpdater interface {
	UpdateVolume(ctx context.Context, id, dest string, files *agentv1.Files) error
}

// refreshVolumes reads the directories vs of container id again at each wakeup and sends
// those whose content changed on the host, until ctx ends. A directory that cannot be read
// or sent is logged and tried again at the next wakeup.
func refreshVolumes(ctx context.Context, g volumeUpdater, id string, vs []hostFiles, wake <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
		for i := range vs {
			v := &vs[i]
			budget := volumeBudget{entries: agentv1.MaxVolumeEntries, bytes: agentv1.MaxVolumeBytes}
			es, err := budget.read(v.src)
			if err != nil {
				log.G(ctx).WithError(err).WithField("id", id).Warnf("read the volume at %q again", v.dest)
				continue
			}
			files := &agentv1.Files{Entries: es}
			if proto.Equal(files, v.sent) {
				continue
			}
			if err := g.UpdateVolume(ctx, id, v.dest, files); err != nil {
				log.G(ctx).WithError(err).WithField("id", id).Warnf("update the volume at %q in the guest", v.dest)
				continue
			}
			v.sent = files
		}
	}
}

// volumeBudget is what is left of the agent's bounds on a container's copied files.
type volumeBudget struct {
	entries, bytes int
}

// read returns src (a regular file, or a directory tree) as file entries. In a directory
// the kubelet's own entries (names starting with "..": the atomic writer's ..data and its
// timestamped directories) are skipped and symlinks are followed (the keys of a ConfigMap
// are symlinks into ..data), but only to a target inside src.
func (b *volumeBudget) read(src string) ([]*agentv1.FileEntry, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() {
		e, err := b.file(src, "", fi)
		if err != nil {
			return nil, err
		}
		return []*agentv1.FileEntry{e}, nil
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is a %s, neither a file nor a directory (a block volume cannot reach the guest)", src, fi.Mode().Type())
	}
	root, err := filepath.EvalSymlinks(src)
	if err != nil {
		return nil, err
	}
	var out []*agentv1.FileEntry
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, de := range ents {
			if strings.HasPrefix(de.Name(), "..") {
				continue
			}
			p, r := filepath.Join(dir, de.Name()), filepath.Join(rel, de.Name())
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return err
			}
			if real != root && !strings.HasPrefix(real, root+"/") {
				return fmt.Errorf("%s is a symlink out of the volume (to %s)", p, real)
			}
			fi, err := os.Stat(real)
			if err != nil {
				return err
			}
			switch {
			case fi.IsDir():
				if err := b.take(r, 0); err != nil {
					return err
				}
				out = append(out, &agentv1.FileEntry{Path: r, Mode: uint32(fi.Mode().Perm()), Dir: true})
				if err := walk(real, r); err != nil {
					return err
				}
			case fi.Mode().IsRegular():
				e, err := b.file(real, r, fi)
				if err != nil {
					return err
				}
				out = append(out, e)
			default:
				return fmt.Errorf("%s is a %s: only files and directories are copied", p, fi.Mode().Type())
			}
		}
		return nil
	}
	if err := walk(root, ""); err != nil {
		return nil, err
	}
	return out, nil
}

// file reads regular file name (entry path rel) within the budget.
func (b *volumeBudget) file(name, rel string, fi fs.FileInfo) (*agentv1.FileEntry, error) {
	if fi.Size() > agentv1.MaxVolumeFileBytes {
		return nil, fmt.Errorf("%s has %d bytes: a file copied into the guest may have at most %d", name, fi.Size(), agentv1.MaxVolumeFileBytes)
	}
	if err := b.take(name, int(fi.Size())); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if len(data) > agentv1.MaxVolumeFileBytes {
		return nil, fmt.Errorf("%s has grown to %d bytes: a file copied into the guest may have at most %d", name, len(data), agentv1.MaxVolumeFileBytes)
	}
	return &agentv1.FileEntry{Path: rel, Mode: uint32(fi.Mode().Perm()), Data: data}, nil
}

// take counts one entry of size bytes against the budget.
func (b *volumeBudget) take(name string, size int) error {
	b.entries--
	b.bytes -= size
	if b.entries < 0 {
		return fmt.Errorf("at %s: the files copied into a container's guest may number at most %d", name, agentv1.MaxVolumeEntries)
	}
	if b.bytes < 0 {
		return fmt.Errorf("at %s: the files copied into a container's guest may have at most %d bytes in all", name, agentv1.MaxVolumeBytes)
	}
	return nil
}

// defaultVolumes are the volumes the default pod policy lets a container with vs take:
// every emptyDir, and host files at StandardVolumeDestinations. A volume elsewhere is left
// out, so the agent refuses the create naming its destination.
func defaultVolumes(vs []*agentv1.Volume) []policy.Volume {
	var out []policy.Volume
	for _, v := range vs {
		switch {
		case v.GetEmptyDir() != nil:
			out = append(out, policy.Volume{Destination: v.GetDestination(), Kind: policy.VolumeEmptyDir})
		case slices.Contains(StandardVolumeDestinations, v.GetDestination()):
			out = append(out, policy.Volume{Destination: v.GetDestination(), Kind: policy.VolumeFiles, ReadBack: v.GetDestination() == TerminationLog})
		}
	}
	return out
}
