package container

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agentv1 "confguest/agent/api/v1/wire"
)

// Volumes (agentv1.Volume) reach a container without a filesystem shared with the host:
// the files the host sends are written under the container's directory
// (<state>/containers/<id>/volumes/<n>), removed with the container; an emptyDir lives in
// <state>/emptydirs/<sha256 of its name>, shared by the containers that name it and kept
// until the agent shuts down (the pod's VM ends with it). The agent bind-mounts each at its
// destination after the spec's mounts; the host names only the destination.

// forbiddenVolumeRoots are the trees no volume may be mounted in: a mount there acts on
// the kernel's view of the container, not on files.
var forbiddenVolumeRoots = []string{"/proc", "/sys"}

// checkVolumes checks vs against the bounds (agentv1.MaxVolume*) and against spec's mounts
// before anything is created.
func checkVolumes(vs []*agentv1.Volume, spec *specs.Spec) error {
	if len(vs) > agentv1.MaxVolumes {
		return fieldErr("volumes", "%d volumes: at most %d", len(vs), agentv1.MaxVolumes)
	}
	dests := map[string]string{}
	for i, m := range spec.Mounts {
		dests[m.Destination] = fmt.Sprintf("spec.mounts[%d]", i)
	}
	var entries, bytes int
	for i, v := range vs {
		field := fmt.Sprintf("volumes[%d]", i)
		d := v.GetDestination()
		if !strings.HasPrefix(d, "/") || path.Clean(d) != d || d == "/" || strings.ContainsRune(d, 0) {
			return fieldErr(field+".destination", "%q: want a clean absolute path other than /", d)
		}
		for _, r := range forbiddenVolumeRoots {
			if d == r || strings.HasPrefix(d, r+"/") {
				return fieldErr(field+".destination", "%q: no volume may be mounted in %s", d, r)
			}
		}
		if prev, ok := dests[d]; ok {
			return fieldErr(field+".destination", "%q is also the destination of %s", d, prev)
		}
		for m := range dests {
			if strings.HasPrefix(m, d+"/") {
				return fieldErr(field+".destination", "%q would hide the mount at %q (%s)", d, m, dests[m])
			}
		}
		dests[d] = field
		switch {
		case v.GetFiles() != nil && v.GetEmptyDir() == nil:
			n, b, err := checkFiles(field+".files", v.GetFiles().GetEntries())
			if err != nil {
				return err
			}
			entries, bytes = entries+n, bytes+b
		case v.GetEmptyDir() != nil && v.GetFiles() == nil:
			name := v.GetEmptyDir().GetName()
			if name == "" || len(name) > agentv1.MaxEmptyDirName || strings.ContainsRune(name, 0) {
				return fieldErr(field+".empty_dir.name", "want 1 to %d bytes without NUL", agentv1.MaxEmptyDirName)
			}
		default:
			return fieldErr(field, "volume at %q: want exactly one of files and empty_dir", d)
		}
		if entries > agentv1.MaxVolumeEntries {
			return fieldErr(field+".files", "volume at %q: the container's volumes hold more than %d files and directories", d, agentv1.MaxVolumeEntries)
		}
		if bytes > agentv1.MaxVolumeBytes {
			return fieldErr(field+".files", "volume at %q: the container's volume files exceed %d bytes in all", d, agentv1.MaxVolumeBytes)
		}
	}
	return nil
}

// checkFiles checks the entries of one files volume: either one regular file with an empty
// path (the destination is that file) or entries at distinct clean relative paths. It
// returns their count and bytes.
func checkFiles(field string, es []*agentv1.FileEntry) (n, bytes int, err error) {
	if len(es) == 1 && es[0].GetPath() == "" {
		e := es[0]
		if e.GetDir() {
			return 0, 0, fieldErr(field+".entries[0]", "a volume that is one file cannot be a directory: give the directory's entries paths")
		}
		if err := checkEntry(field+".entries[0]", e); err != nil {
			return 0, 0, err
		}
		return 1, len(e.GetData()), nil
	}
	seen := map[string]bool{} // path -> a directory
	for _, e := range es {
		seen[e.GetPath()] = e.GetDir()
	}
	for i, e := range es {
		f := fmt.Sprintf("%s.entries[%d]", field, i)
		for d := path.Dir(e.GetPath()); d != "." && d != "/" && d != "" && fs.ValidPath(e.GetPath()); d = path.Dir(d) {
			if isDir, ok := seen[d]; ok && !isDir {
				return 0, 0, fieldErr(f+".path", "%q is below %q, which is a file", e.GetPath(), d)
			}
		}
	}
	seen = map[string]bool{}
	for i, e := range es {
		f := fmt.Sprintf("%s.entries[%d]", field, i)
		p := e.GetPath()
		if !fs.ValidPath(p) || p == "." || strings.ContainsRune(p, 0) {
			return 0, 0, fieldErr(f+".path", "%q: want a clean relative path below the destination, without .. or a leading /", p)
		}
		if strings.HasPrefix(p, "..") {
			return 0, 0, fieldErr(f+".path", "%q: names starting with .. are the agent's (..data)", p)
		}
		if seen[p] {
			return 0, 0, fieldErr(f+".path", "%q: listed twice", p)
		}
		seen[p] = true
		if err := checkEntry(f, e); err != nil {
			return 0, 0, err
		}
		bytes += len(e.GetData())
	}
	return len(es), bytes, nil
}

func checkEntry(field string, e *agentv1.FileEntry) error {
	if e.GetMode()&^0o777 != 0 {
		return fieldErr(field+".mode", "%#o: only permission bits (0o777) are allowed", e.GetMode())
	}
	if e.GetDir() && len(e.GetData()) > 0 {
		return fieldErr(field+".data", "a directory has no data")
	}
	if len(e.GetData()) > agentv1.MaxVolumeFileBytes {
		return fieldErr(field+".data", "file %q has %d bytes: at most %d a file", e.GetPath(), len(e.GetData()), agentv1.MaxVolumeFileBytes)
	}
	return nil
}

// volumeMounts writes the files volumes under dir/volumes, creates the emptyDirs the
// container needs, and returns the bind mounts that put them at their destinations.
func (m *Manager) volumeMounts(dir string, vs []*agentv1.Volume) ([]specs.Mount, map[string]*filesVolume, error) {
	var out []specs.Mount
	copies := map[string]*filesVolume{}
	for i, v := range vs {
		var src string
		if v.GetFiles() != nil {
			src = filepath.Join(dir, "volumes", strconv.Itoa(i))
			fv, err := writeFiles(src, v.GetFiles().GetEntries())
			if err != nil {
				return nil, nil, fmt.Errorf("copy the files of the volume at %q: %w", v.GetDestination(), err)
			}
			copies[v.GetDestination()] = fv
		} else {
			var err error
			if src, err = m.emptyDir(v.GetEmptyDir()); err != nil {
				return nil, nil, fmt.Errorf("the emptyDir at %q: %w", v.GetDestination(), err)
			}
		}
		opts := []string{"rbind", "nosuid", "nodev"}
		if v.GetReadOnly() {
			opts = append(opts, "ro")
		}
		out = append(out, specs.Mount{Destination: v.GetDestination(), Type: "bind", Source: src, Options: opts})
	}
	return out, copies, nil
}

// filesVolume is the guest copy of a files volume: one file, or a directory laid out as
// the kubelet's atomic writer lays one out: the entries in a generation directory
// (..<n>), a symlink ..data naming the current one, and each top-level entry a symlink
// into ..data. An update writes the next generation and swaps ..data.
type filesVolume struct {
	file   string // the volume that is one file, writable ("" otherwise)
	dir    string // the volume's directory ("" for a volume that is one file)
	gen    int    // the current generation
	update sync.Mutex
}

// writeFiles creates dst as the file or the tree es describe (checkFiles checked them).
func writeFiles(dst string, es []*agentv1.FileEntry) (*filesVolume, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return nil, err
	}
	if len(es) == 1 && es[0].GetPath() == "" {
		return &filesVolume{file: dst}, writeFile(dst, es[0])
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return nil, err
	}
	fv := &filesVolume{dir: dst}
	return fv, fv.swap(es)
}

// swap writes es as the volume's next generation and makes it the current one.
func (fv *filesVolume) swap(es []*agentv1.FileEntry) error {
	gen := fmt.Sprintf("..%d", fv.gen+1)
	if err := writeTree(filepath.Join(fv.dir, gen), es); err != nil {
		_ = os.RemoveAll(filepath.Join(fv.dir, gen))
		return err
	}
	tops := map[string]bool{}
	for _, e := range es {
		top, _, _ := strings.Cut(e.GetPath(), "/")
		tops[top] = true
	}
	for top := range tops {
		link := filepath.Join(fv.dir, top)
		if t, err := os.Readlink(link); err == nil && t == "..data/"+top {
			continue
		}
		if err := os.Symlink("..data/"+top, link); err != nil {
			return err
		}
	}
	tmp := filepath.Join(fv.dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(gen, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(fv.dir, "..data")); err != nil {
		return err
	}
	fv.gen++
	ents, err := os.ReadDir(fv.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, de := range ents {
		name := de.Name()
		if (strings.HasPrefix(name, "..") && name != "..data" && name != gen) || (!strings.HasPrefix(name, "..") && !tops[name]) {
			errs = append(errs, os.RemoveAll(filepath.Join(fv.dir, name)))
		}
	}
	return errors.Join(errs...)
}

// writeTree creates directory dst holding es, through an os.Root at dst, so no entry
// lands outside it.
func writeTree(dst string, es []*agentv1.FileEntry) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, e := range es {
		p := e.GetPath()
		if d := path.Dir(p); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("entry %q: %w", p, err)
			}
		}
		if e.GetDir() {
			if err := root.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("entry %q: %w", p, err)
			}
			if err := root.Chmod(p, fs.FileMode(e.GetMode())); err != nil {
				return fmt.Errorf("entry %q: %w", p, err)
			}
			continue
		}
		f, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("entry %q: %w", p, err)
		}
		if err := fillFile(f, e); err != nil {
			return fmt.Errorf("entry %q: %w", p, err)
		}
	}
	return nil
}

// ReadVolume returns the first agentv1.MaxReadVolumeBytes of container id's one-file
// volume at dest, and whether the file is longer.
func (m *Manager) ReadVolume(ctx context.Context, id, dest string) ([]byte, bool, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, false, err
	}
	fv, ok := c.volumes[dest]
	if !ok {
		return nil, false, fmt.Errorf("container %s has no volume of host files at %q: %w", id, dest, ErrNotFound)
	}
	if fv.file == "" {
		return nil, false, fieldErr("destination", "%q is a directory: only a volume that is one file is read back", dest)
	}
	f, err := os.OpenFile(fv.file, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, false, fmt.Errorf("read back %q of container %s: %w", dest, id, err)
	}
	defer f.Close()
	buf := make([]byte, agentv1.MaxReadVolumeBytes+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, false, fmt.Errorf("read back %q of container %s: %w", dest, id, err)
	}
	if n > agentv1.MaxReadVolumeBytes {
		return buf[:agentv1.MaxReadVolumeBytes], true, nil
	}
	return buf[:n], false, nil
}

// UpdateVolume replaces the content of container id's directory volume of host files at
// dest with es (agentv1 UpdateVolume).
func (m *Manager) UpdateVolume(ctx context.Context, id, dest string, es []*agentv1.FileEntry) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	fv, ok := c.volumes[dest]
	if !ok {
		return fmt.Errorf("container %s has no volume of host files at %q: %w", id, dest, ErrNotFound)
	}
	if fv.dir == "" {
		return fieldErr("destination", "%q is one file: a file mount is not updated (nor is it by the kubelet)", dest)
	}
	n, bytes, err := checkFiles("files", es)
	if err != nil {
		return err
	}
	if n > agentv1.MaxVolumeEntries || bytes > agentv1.MaxVolumeBytes {
		return fieldErr("files", "%d entries, %d bytes: at most %d and %d", n, bytes, agentv1.MaxVolumeEntries, agentv1.MaxVolumeBytes)
	}
	if len(es) == 1 && es[0].GetPath() == "" {
		return fieldErr("files.entries[0].path", "empty: the volume at %q is a directory", dest)
	}
	fv.update.Lock()
	defer fv.update.Unlock()
	if err := fv.swap(es); err != nil {
		return fmt.Errorf("update the volume at %q of container %s: %w", dest, id, err)
	}
	return nil
}

func writeFile(name string, e *agentv1.FileEntry) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	return fillFile(f, e)
}

// fillFile writes e's data and mode to f and closes it.
func fillFile(f *os.File, e *agentv1.FileEntry) error {
	_, err := f.Write(e.GetData())
	if err == nil {
		err = f.Chmod(fs.FileMode(e.GetMode()))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// emptyDirState is one emptyDir of the pod.
type emptyDirState struct {
	dir    string
	memory bool
}

// emptyDir returns the directory of the pod's emptyDir e, creating it (world-writable, as
// the kubelet creates one; on a tmpfs of its own for medium Memory) on first use.
func (m *Manager) emptyDir(e *agentv1.EmptyDir) (string, error) {
	m.podMu.Lock()
	defer m.podMu.Unlock()
	if d, ok := m.emptyDirs[e.GetName()]; ok {
		if d.memory != e.GetMemory() {
			return "", fieldErr("empty_dir.memory", "%t, but the pod's emptyDir %q was created with medium Memory %t", e.GetMemory(), e.GetName(), d.memory)
		}
		return d.dir, nil
	}
	sum := sha256.Sum256([]byte(e.GetName()))
	dir := filepath.Join(m.cfg.StateDir, "emptydirs", hex.EncodeToString(sum[:16]))
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", err
	}
	if err := os.Mkdir(dir, 0o777); err != nil {
		return "", err
	}
	if e.GetMemory() {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0777"); err != nil {
			_ = os.Remove(dir)
			return "", fmt.Errorf("mount a tmpfs for medium Memory: %w", err)
		}
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return "", err
	}
	if m.emptyDirs == nil {
		m.emptyDirs = map[string]emptyDirState{}
	}
	m.emptyDirs[e.GetName()] = emptyDirState{dir: dir, memory: e.GetMemory()}
	return dir, nil
}

// closeEmptyDirs removes the pod's emptyDirs (agent shutdown, after every container).
func (m *Manager) closeEmptyDirs() error {
	m.podMu.Lock()
	defer m.podMu.Unlock()
	var errs []error
	for name, d := range m.emptyDirs {
		if d.memory {
			if err := unix.Unmount(d.dir, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount emptyDir %q: %w", name, err))
				continue
			}
		}
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove emptyDir %q: %w", name, err))
		}
		delete(m.emptyDirs, name)
	}
	return errors.Join(errs...)
}
