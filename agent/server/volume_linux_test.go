package server

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	"google.golang.org/grpc/codes"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

func fileVolume(dest string, ro bool, data string) *agentv1.Volume {
	return &agentv1.Volume{Destination: dest, ReadOnly: ro, Files: &agentv1.Files{Entries: []*agentv1.FileEntry{{Mode: 0o644, Data: []byte(data)}}}}
}

func treeVolume(dest string, es ...*agentv1.FileEntry) *agentv1.Volume {
	return &agentv1.Volume{Destination: dest, ReadOnly: true, Files: &agentv1.Files{Entries: es}}
}

func emptyDirVolume(dest, name string, memory bool) *agentv1.Volume {
	return &agentv1.Volume{Destination: dest, EmptyDir: &agentv1.EmptyDir{Name: name, Memory: memory}}
}

// TestVolumes: host-provided files are copied into the container (a file, a tree with
// modes, read-only where asked); an emptyDir (disk and Memory) written by one container is
// read by another; a container's copies go with it and the emptyDirs with the agent.
func TestVolumes(t *testing.T) {
	var ta *testAgent
	t.Cleanup(func() { // registered first: runs once the agent has stopped
		if ta == nil {
			return
		}
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), filepath.Join(ta.stateDir, "emptydirs")) {
			t.Errorf("an emptyDir is still mounted after the agent stopped")
		}
		if _, err := os.Stat(filepath.Join(ta.stateDir, "emptydirs")); err == nil {
			if ents, _ := os.ReadDir(filepath.Join(ta.stateDir, "emptydirs")); len(ents) > 0 {
				t.Errorf("emptyDirs left after the agent stopped: %d", len(ents))
			}
		}
	})
	ta = startAgent(t, nil, container.Config{})
	const disk, mem = "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache", "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/mem"
	writer := ta.runPodContainer(t, "writer", nil, podSpec(t, "", `cat /etc/hosts; cat /etc/config/a /etc/config/sub/b
stat -L -c '%a %n' /etc/config/sub/b /etc/config/sub
(echo x >> /etc/hosts) 2>/dev/null && echo hosts writable || echo hosts read-only
(echo terminated-because >> /dev/termination-log) 2>/dev/null && echo log writable || echo log read-only
echo from-writer > /cache/f && echo from-memory > /mem/f
stat -c '%a' /cache
grep ' /mem ' /proc/mounts | cut -d' ' -f3`),
		fileVolume("/etc/hosts", true, "127.0.0.1 localhost pod\n"),
		fileVolume("/dev/termination-log", false, ""),
		treeVolume("/etc/config",
			&agentv1.FileEntry{Path: "a", Mode: 0o644, Data: []byte("value-a\n")},
			&agentv1.FileEntry{Path: "sub", Mode: 0o750, Dir: true},
			&agentv1.FileEntry{Path: "sub/b", Mode: 0o600, Data: []byte("value-b\n")}),
		emptyDirVolume("/cache", disk, false),
		emptyDirVolume("/mem", mem, true))
	out := writer()
	for _, want := range []string{"127.0.0.1 localhost pod\n", "value-a\nvalue-b\n", "600 /etc/config/sub/b\n750 /etc/config/sub\n",
		"hosts read-only\n", "log writable\n", "777\n", "tmpfs\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("writer printed %q, want it to contain %q", out, want)
		}
	}
	reader := ta.runPodContainer(t, "reader", nil, podSpec(t, "", `cat /data/f /m/f`),
		emptyDirVolume("/data", disk, false), emptyDirVolume("/m", mem, true))
	if got := reader(); got != "from-writer\nfrom-memory\n" {
		t.Errorf("reader of the emptyDirs printed %q, want from-writer and from-memory", got)
	}
	// The termination log the container wrote is read back once it exited; a directory
	// and a file it does not have are not.
	rb, err := ta.client.ReadVolume(ctx(t), &agentv1.ReadVolumeRequest{ContainerId: "writer", Destination: "/dev/termination-log"})
	if err != nil || string(rb.GetData()) != "terminated-because\n" || rb.GetTruncated() {
		t.Errorf("ReadVolume(writer, /dev/termination-log) = %v, %v; want terminated-because", rb, err)
	}
	if _, err := ta.client.ReadVolume(ctx(t), &agentv1.ReadVolumeRequest{ContainerId: "writer", Destination: "/etc/config"}); code(err) != codes.InvalidArgument {
		t.Errorf("ReadVolume(a directory) = %v, want InvalidArgument", err)
	}
	if _, err := ta.client.ReadVolume(ctx(t), &agentv1.ReadVolumeRequest{ContainerId: "writer", Destination: "/cache"}); code(err) != codes.NotFound {
		t.Errorf("ReadVolume(an emptyDir) = %v, want NotFound", err)
	}
	copies := filepath.Join(ta.stateDir, "containers", "writer", "volumes")
	if _, err := os.Stat(copies); err != nil {
		t.Errorf("the writer's copied files: %v", err)
	}
	if _, err := ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "writer"}); err != nil {
		t.Fatalf("DeleteContainer(writer) = %v", err)
	}
	if _, err := os.Stat(copies); err == nil {
		t.Errorf("%s left after the container was deleted", copies)
	}

	// A directory of host files is updated as the kubelet's atomic writer updates one:
	// the container sees the whole new set (a changed, sub gone, c new) at once.
	cfg := treeVolume("/etc/config", &agentv1.FileEntry{Path: "a", Mode: 0o644, Data: []byte("v1\n")}, &agentv1.FileEntry{Path: "sub/b", Mode: 0o644, Data: []byte("b\n")})
	watcher := ta.runPodContainer(t, "watcher", nil, podSpec(t, "", `i=0; while ! grep -q v2 /etc/config/a && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
cat /etc/config/a /etc/config/c; ls /etc/config; ls -a /etc/config | grep -c '^\.\.[0-9]'`), cfg, fileVolume("/etc/hosts", true, "h\n"))
	_, err = ta.client.UpdateVolume(ctx(t), &agentv1.UpdateVolumeRequest{ContainerId: "watcher", Destination: "/etc/config", Files: &agentv1.Files{Entries: []*agentv1.FileEntry{
		{Path: "a", Mode: 0o644, Data: []byte("v2\n")}, {Path: "c", Mode: 0o644, Data: []byte("new-c\n")}}}})
	if err != nil {
		t.Fatalf("UpdateVolume(watcher, /etc/config) = %v", err)
	}
	if got, want := watcher(), "v2\nnew-c\na\nc\n1\n"; got != want {
		t.Errorf("the container after UpdateVolume printed %q, want %q (a updated, c new, sub gone, one generation left)", got, want)
	}
	for _, tc := range []struct {
		name, dest string
		es         []*agentv1.FileEntry
		want       codes.Code
	}{
		{"a volume that is one file", "/etc/hosts", []*agentv1.FileEntry{{Mode: 0o644, Data: []byte("x")}}, codes.InvalidArgument},
		{"no such volume", "/etc/other", []*agentv1.FileEntry{{Path: "a"}}, codes.NotFound},
		{"the agent's ..data", "/etc/config", []*agentv1.FileEntry{{Path: "..data"}}, codes.InvalidArgument},
		{"a traversal", "/etc/config", []*agentv1.FileEntry{{Path: "../../x"}}, codes.InvalidArgument},
		{"a huge file", "/etc/config", []*agentv1.FileEntry{{Path: "a", Data: make([]byte, agentv1.MaxVolumeFileBytes+1)}}, codes.InvalidArgument},
	} {
		_, err := ta.client.UpdateVolume(ctx(t), &agentv1.UpdateVolumeRequest{ContainerId: "watcher", Destination: tc.dest, Files: &agentv1.Files{Entries: tc.es}})
		if code(err) != tc.want {
			t.Errorf("UpdateVolume(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}

	// An emptyDir keeps the medium it was created with.
	_, err = ta.client.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{
		ContainerId: "medium", SpecJson: podSpec(t, "", "true"), Volumes: []*agentv1.Volume{emptyDirVolume("/cache", disk, true)},
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}},
	})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "medium Memory") {
		t.Errorf("CreateContainer(an emptyDir with another medium) = %v, want InvalidArgument naming the medium", err)
	}
}

// TestVolumesHostile: volumes that would escape their destination, land in /proc or /sys,
// cover the root or another mount, or exceed the bounds are refused by the agent itself
// (whatever a policy says), naming the field, and leave nothing behind.
func TestVolumesHostile(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	// A symlink in the image: a volume below it lands inside the rootfs, never on the host.
	escape := filepath.Join(t.TempDir(), "escaped")
	if err := os.Symlink(escape, filepath.Join(ta.image, "escape")); err != nil {
		t.Fatal(err)
	}
	entry := func(p string, mode uint32, n int) *agentv1.FileEntry {
		return &agentv1.FileEntry{Path: p, Mode: mode, Data: bytes.Repeat([]byte("x"), n)}
	}
	many := make([]*agentv1.FileEntry, agentv1.MaxVolumeEntries+1)
	for i := range many {
		many[i] = entry("f"+itoa(uint32(i)), 0o644, 0)
	}
	big := agentv1.MaxVolumeFileBytes
	for _, tc := range []struct {
		name, wantField string
		vs              []*agentv1.Volume
	}{
		{"a traversal in an entry", "volumes[0].files.entries[0].path", []*agentv1.Volume{treeVolume("/etc/config", entry("../../../etc/passwd", 0o644, 1))}},
		{"a traversal inside an entry", "volumes[0].files.entries[0].path", []*agentv1.Volume{treeVolume("/etc/config", entry("a/../../b", 0o644, 1))}},
		{"an absolute entry", "volumes[0].files.entries[0].path", []*agentv1.Volume{treeVolume("/etc/config", entry("/etc/passwd", 0o644, 1))}},
		{"an entry named as the agent's ..data", "volumes[0].files.entries[0].path", []*agentv1.Volume{treeVolume("/etc/config", entry("..data", 0o644, 1))}},
		{"an entry listed twice", "volumes[0].files.entries[1].path", []*agentv1.Volume{treeVolume("/etc/config", entry("a", 0o644, 1), entry("a", 0o644, 1))}},
		{"a file below a file", "volumes[0].files.entries[1].path", []*agentv1.Volume{treeVolume("/etc/config", entry("a", 0o644, 1), entry("a/b", 0o644, 1))}},
		{"a setuid mode", "volumes[0].files.entries[0].mode", []*agentv1.Volume{treeVolume("/etc/config", entry("a", 0o4755, 1))}},
		{"a directory with data", "volumes[0].files.entries[0].data", []*agentv1.Volume{treeVolume("/etc/config", &agentv1.FileEntry{Path: "d", Dir: true, Data: []byte("x")})}},
		{"a huge file", "volumes[0].files.entries[0].data", []*agentv1.Volume{treeVolume("/etc/config", entry("a", 0o644, big+1))}},
		{"too many bytes", "volumes[2].files", []*agentv1.Volume{fileVolume("/a", true, strings.Repeat("x", big)), fileVolume("/b", true, strings.Repeat("x", big)), fileVolume("/c", true, "x")}},
		{"too many files", "volumes[0].files", []*agentv1.Volume{treeVolume("/etc/config", many...)}},
		{"into /proc", "volumes[0].destination", []*agentv1.Volume{fileVolume("/proc/sys/kernel/core_pattern", false, "|/x")}},
		{"onto /sys", "volumes[0].destination", []*agentv1.Volume{emptyDirVolume("/sys", "s", false)}},
		{"over the root", "volumes[0].destination", []*agentv1.Volume{emptyDirVolume("/", "r", false)}},
		{"a relative destination", "volumes[0].destination", []*agentv1.Volume{emptyDirVolume("etc", "r", false)}},
		{"an unclean destination", "volumes[0].destination", []*agentv1.Volume{emptyDirVolume("/etc/../proc", "r", false)}},
		{"a destination twice", "volumes[1].destination", []*agentv1.Volume{emptyDirVolume("/data", "a", false), fileVolume("/data", true, "x")}},
		{"a spec mount's destination", "volumes[0].destination", []*agentv1.Volume{emptyDirVolume("/dev/pts", "a", false)}},
		{"over a spec mount", "volumes[0].destination", []*agentv1.Volume{emptyDirVolume("/dev", "a", false)}},
		{"both kinds", "volumes[0]", []*agentv1.Volume{{Destination: "/data", Files: &agentv1.Files{}, EmptyDir: &agentv1.EmptyDir{Name: "a"}}}},
		{"neither kind", "volumes[0]", []*agentv1.Volume{{Destination: "/data"}}},
		{"an emptyDir without a name", "volumes[0].empty_dir.name", []*agentv1.Volume{emptyDirVolume("/data", "", false)}},
		{"one file that is a directory", "volumes[0].files.entries[0]", []*agentv1.Volume{treeVolume("/data", &agentv1.FileEntry{Dir: true})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ta.client.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{
				ContainerId: "hostile", SpecJson: podSpec(t, "", "true"), Volumes: tc.vs,
				Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}},
			})
			if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.wantField) {
				t.Errorf("CreateContainer = %v, want InvalidArgument naming %s", err, tc.wantField)
			}
			if got := leftovers(t, ta.stateDir, "hostile", 0); len(got) > 0 {
				t.Errorf("a refused create left %q", got)
			}
		})
	}

	t.Run("below a symlink of the image", func(t *testing.T) {
		s := specconv.Example()
		s.Process.Terminal = false
		s.Process.Args = []string{"cat", "/escape/f"}
		specJSON, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		out := ta.runPodContainer(t, "symlink", nil, specJSON, fileVolume("/escape/f", true, "inside\n"))
		if got := out(); got != "inside\n" {
			t.Errorf("cat /escape/f printed %q, want inside", got)
		}
		if _, err := os.Lstat(escape); err == nil {
			t.Errorf("a volume below the image's symlink %s was created on the host", escape)
		}
	})
}
