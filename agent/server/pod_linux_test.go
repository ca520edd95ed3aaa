package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

// nsLinks prints the namespaces of the shell, one "kind:[inode]" per line.
const nsLinks = `for n in net ipc uts pid; do echo "$n $(readlink /proc/self/ns/$n)"; done; echo "hostname $(hostname)"`

// podSpec is `runc spec` running sh -c script, with the given hostname.
func podSpec(t *testing.T, hostname, script string) []byte {
	t.Helper()
	s := specconv.Example()
	s.Process.Terminal = false
	s.Process.Args = []string{"sh", "-c", script}
	s.Hostname = hostname
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runPodContainer creates and starts container id joining the pod namespaces types and
// returns a func that waits for it and returns its stdout. (A namespace compared after its
// last process exited may share its inode number with a later one: the pod's namespaces
// live as long as the agent, the agent's too.) The container mounts volumes vs.
func (ta *testAgent) runPodContainer(t *testing.T, id string, types []specs.LinuxNamespaceType, specJSON []byte, vs ...*agentv1.Volume) func() string {
	t.Helper()
	pod, err := agentv1.NewPodNamespaces(types)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ta.client.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{
		ContainerId: id, SpecJson: specJSON, PodNamespaces: pod, Volumes: vs,
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}},
	}); err != nil {
		t.Fatalf("CreateContainer(%s, pod namespaces %v) = %v", id, types, err)
	}
	ta.removeOnCleanup(t, id)
	out := ta.readOutput(t, id, "", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer(%s) = %v", id, err)
	}
	return func() string {
		ta.wait(t, id, "")
		s, _ := out()
		return s
	}
}

// namespaces parses nsLinks' output into kind -> link.
func namespaces(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			m[k] = v
		}
	}
	return m
}

// TestPodNamespaces: containers that join the pod's namespaces share them with each other
// and with no one else (not the agent's); a container that joins none has its own; two
// containers of the pod reach each other on localhost.
func TestPodNamespaces(t *testing.T) {
	var ta *testAgent
	// Registered first, so it runs once the agent has stopped: the holder and the pod's
	// namespace files are gone with it.
	t.Cleanup(func() {
		if ta == nil {
			return
		}
		for _, p := range holders(t) {
			t.Errorf("pod namespace holder left after the agent stopped: pid %s", p)
		}
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), filepath.Join(ta.stateDir, "pod")) {
			t.Errorf("pod namespace files still mounted after the agent stopped")
		}
	})
	ta = startAgent(t, nil, container.Config{})
	all := []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.PIDNamespace}
	a := namespaces(ta.runPodContainer(t, "a", all, podSpec(t, "pod", nsLinks))())
	b := namespaces(ta.runPodContainer(t, "b", all[:3], podSpec(t, "pod", nsLinks))())
	own := namespaces(ta.runPodContainer(t, "own", nil, podSpec(t, "own", nsLinks))())
	agent := map[string]string{}
	for _, n := range []string{"net", "ipc", "uts", "pid"} {
		l, err := os.Readlink("/proc/self/ns/" + n)
		if err != nil {
			t.Fatal(err)
		}
		agent[n] = l
	}
	for _, n := range []string{"net", "ipc", "uts"} {
		if a[n] == "" || a[n] != b[n] {
			t.Errorf("%s namespace: a %q, b %q; want the pod's, shared", n, a[n], b[n])
		}
		if a[n] == agent[n] || a[n] == own[n] {
			t.Errorf("%s namespace of the pod %q: also the agent's (%q) or a container's of its own (%q)", n, a[n], agent[n], own[n])
		}
	}
	if a["pid"] == b["pid"] || a["pid"] == agent["pid"] || a["pid"] == own["pid"] {
		t.Errorf("pid namespaces: a (the pod's) %q, b (its own) %q, agent %q, own %q; want all different", a["pid"], b["pid"], agent["pid"], own["pid"])
	}
	if a["hostname"] != "pod" || own["hostname"] != "own" {
		t.Errorf("hostnames: a %q, own %q; want pod and own", a["hostname"], own["hostname"])
	}

	if got := holders(t); len(got) != 1 {
		t.Errorf("pod namespace holders of this agent: %q, want one", got)
	}

	// The pod's PID namespace: its PID 1 is the holder, so a container in it is not PID 1;
	// the holder, which it sees, is an unprivileged user without capabilities.
	pid := ta.runPodContainer(t, "pid", all, podSpec(t, "pod", `echo "pid $$"; cat /proc/1/status`))()
	if first, _, _ := strings.Cut(pid, "\n"); first == "pid 1" || !strings.HasPrefix(first, "pid ") {
		t.Errorf("a container in the pod's PID namespace printed %q, want its PID there, not 1", first)
	}
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(pid, want) {
			t.Errorf("/proc/1/status of the pod's PID namespace (the holder) has no %q:\n%s", want, pid)
		}
	}

	// In the pod's PID namespace a container's processes end with its init, as in a PID
	// namespace of its own (where the kernel does it).
	ta.runPodContainer(t, "orphans", all, podSpec(t, "pod", `sleep 1000 & echo started`))()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ta.client.Stats(ctx(t), &agentv1.StatsRequest{ContainerId: "orphans"})
		if err != nil {
			t.Fatalf("Stats(orphans) = %v", err)
		}
		if st.GetPids().GetCurrent() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d processes of a container in the pod's PID namespace outlived its init by 10s", st.GetPids().GetCurrent())
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The server listens on the pod's loopback; the client, another container, connects.
	server := ta.runPodContainer(t, "server", all[:3], podSpec(t, "pod", `(echo pong; sleep 1) | nc -l -p 8080`))
	client := ta.runPodContainer(t, "client", all[:3], podSpec(t, "pod",
		`i=0; while [ $i -lt 100 ]; do (echo ping; sleep 1) | nc 127.0.0.1 8080 && exit 0; sleep 0.1; i=$((i+1)); done; exit 1`))
	if got := client(); !strings.Contains(got, "pong") {
		t.Errorf("client on the pod's localhost got %q, want pong", got)
	}
	if got := server(); !strings.Contains(got, "ping") {
		t.Errorf("server on the pod's localhost got %q, want ping", got)
	}
}

// holders lists the PIDs of this process's children that run as the pod's namespace holder.
func holders(t *testing.T) []string {
	t.Helper()
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat)[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) || f[0] == "Z" {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(cmd), "\x00"+container.HolderArg) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestPodNamespacesHostile: a request that would join a pod namespace the spec does not
// list, or sends a namespace path along, is refused by the agent itself (whatever a policy
// says), naming the field, and creates no pod.
func TestPodNamespacesHostile(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	withNS := func(mod func([]specs.LinuxNamespace) []specs.LinuxNamespace) []byte {
		s := specconv.Example()
		s.Process.Terminal = false
		s.Linux.Namespaces = mod(s.Linux.Namespaces)
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	without := func(t specs.LinuxNamespaceType) func([]specs.LinuxNamespace) []specs.LinuxNamespace {
		return func(ns []specs.LinuxNamespace) []specs.LinuxNamespace {
			return slices.DeleteFunc(ns, func(n specs.LinuxNamespace) bool { return n.Type == t })
		}
	}
	withPath := func(ns []specs.LinuxNamespace) []specs.LinuxNamespace {
		for i := range ns {
			if ns[i].Type == specs.NetworkNamespace {
				ns[i].Path = "/proc/1/ns/net"
			}
		}
		return ns
	}
	for _, tc := range []struct {
		name, wantField string
		spec            []byte
	}{
		{"joins a namespace the spec does not list", "pod_namespaces", withNS(without(specs.NetworkNamespace))},
		{"sends a path along", "linux.namespaces[", withNS(withPath)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ta.client.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{
				ContainerId: "hostile", SpecJson: tc.spec, PodNamespaces: &agentv1.PodNamespaces{Network: true},
				Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}},
			})
			if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.wantField) {
				t.Errorf("CreateContainer = %v, want InvalidArgument naming %s", err, tc.wantField)
			}
			if h := holders(t); len(h) != 0 {
				t.Errorf("a refused request created the pod's namespace holder: %q", h)
			}
		})
	}
}
