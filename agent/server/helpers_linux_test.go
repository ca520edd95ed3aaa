package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // container init in the test binary
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/authz"
	"confguest/agent/container"
	"confguest/agent/libct"
	"confguest/agent/libct/ops"
)

// The test binary is the agent's helper too (testLibct runs it as "libct OP"), and
// libcontainer re-executes it as the container's init.
func init() {
	if len(os.Args) > 1 && os.Args[1] == container.HolderArg {
		container.RunHolder()
	}
	if len(os.Args) > 2 && os.Args[1] == libctArg {
		os.Exit(ops.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	} // Keep the main thread for the main goroutine. libcontainer joins a
	// container's mount namespace on a locked thread that the runtime then
	// discards; were that the main thread, the runtime would keep it (it
	// never exits the main thread), pinning that container's mounts and
	// dm-verity device forever.
	runtime.LockOSThread()
}

// libctArg makes the test binary the helper of package libct.
const libctArg = "libct"

// withLibct has cfg's agent run the test binary as its libcontainer helper.
func withLibct(cfg Config) Config {
	if cfg.Containers.Libct.Path == "" {
		exe, err := os.Executable()
		if err != nil {
			panic(err)
		}
		cfg.Containers.Libct = libct.Command{Path: exe, Args: []string{libctArg}}
	}
	return cfg
}

var busyboxApplets = []string{"sh", "echo", "cat", "sleep", "true", "false", "stty", "id", "hostname", "head", "dd", "sha256sum", "env", "pwd", "ls", "touch", "nc", "readlink", "seq"}

// busyboxImage builds a minimal rootfs from Debian's busybox-static.
func busyboxImage(t testing.TB, dir string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox rootfs needs /bin/busybox (apt-get install busybox-static): %v", err)
	}
	img := filepath.Join(dir, "busybox")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(img, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(img, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(img, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

type testAgent struct {
	client   agentv1.AgentClient
	raw      *ttrpc.Client
	image    string
	stateDir string
	sock     string // the agent's unix socket, for more connections
	logs     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgent runs the agent on a unix socket with the real ttrpc client,
// as the guest runs it on vsock.
func startAgent(t testing.TB, a authz.Authorizer, cc container.Config) *testAgent {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for libcontainer")
	}
	dir := t.TempDir()
	ta := &testAgent{image: busyboxImage(t, dir), stateDir: filepath.Join(dir, "state"), logs: &syncBuffer{}}
	cc.ImageDirs = append(cc.ImageDirs, ta.image)
	sock := filepath.Join(dir, "agent.sock")
	ta.sock = sock
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- Run(ctx, withLibct(Config{
			Address:    "unix:" + sock,
			StateDir:   ta.stateDir,
			Logger:     slog.New(slog.NewTextHandler(ta.logs, nil)),
			Ready:      func() { close(ready) },
			Authorizer: a,
			Containers: cc,
			Cmdline:    "console=ttyS0 confguest.tee=none",
		}))
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("agent exited before ready: %v", err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ta.raw = ttrpc.NewClient(conn)
	ta.client = agentv1.NewAgentClient(ta.raw)
	t.Cleanup(func() {
		ta.raw.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent Run = %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("agent did not stop")
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", ta.logs.String())
		}
	})
	return ta
}

// spec returns `runc spec` with args and a rootfs from the image.
func spec(t testing.TB, terminal bool, args ...string) []byte {
	t.Helper()
	s := specconv.Example()
	s.Process.Terminal = terminal
	s.Process.Args = args
	s.Hostname = "confguest-test"
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func process(t testing.TB, terminal bool, args ...string) []byte {
	t.Helper()
	p := specs.Process{
		Terminal: terminal,
		Args:     args,
		Env:      []string{"PATH=/bin", "TERM=xterm"},
		Cwd:      "/",
		// As the spec helper's init process (runc's example): a policy
		// refuses an exec that turns no_new_privileges off.
		NoNewPrivileges: true,
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (ta *testAgent) create(t *testing.T, id string, specJSON []byte, stdio *agentv1.StdioOptions) {
	t.Helper()
	_, err := ta.client.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{
		ContainerId: id,
		SpecJson:    specJSON,
		Rootfs:      &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}},
		Stdio:       stdio,
	})
	if err != nil {
		t.Fatalf("CreateContainer(%q) = %v", id, err)
	}
}

// createStarted creates container id from specJSON and starts it; it is removed when the
// test ends.
func (ta *testAgent) createStarted(t *testing.T, id string, specJSON []byte) {
	t.Helper()
	ta.create(t, id, specJSON, nil)
	ta.removeOnCleanup(t, id)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer(%q) = %v", id, err)
	}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// readOutput collects a stream in the background.
// removeOnCleanup kills, waits for and deletes container id when the
// test ends, whatever state the test left it in.
func (ta *testAgent) removeOnCleanup(t *testing.T, id string) {
	t.Cleanup(func() {
		ref := &agentv1.ProcessRef{ContainerId: id}
		_, _ = ta.client.SignalProcess(ctx(t), &agentv1.SignalProcessRequest{Process: ref, Signal: 9, All: true})
		_, _ = ta.client.WaitProcess(ctx(t), &agentv1.WaitProcessRequest{Process: ref})
		_, _ = ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: id})
	})
}

func (ta *testAgent) readOutput(t *testing.T, id, exec string, stream agentv1.OutputStream) func() (string, uint64) {
	t.Helper()
	var buf bytes.Buffer
	var dropped uint64
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		dropped, err = agentv1.CopyOutput(ctx(t), ta.client, &agentv1.ProcessRef{ContainerId: id, ExecId: exec}, stream, &buf)
	}()
	return func() (string, uint64) {
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("output of %s/%s did not end", id, exec)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("CopyOutput(%s/%s) = %v", id, exec, err)
		}
		return buf.String(), dropped
	}
}

func (ta *testAgent) wait(t *testing.T, id, exec string) *agentv1.WaitProcessResponse {
	t.Helper()
	r, err := ta.client.WaitProcess(ctx(t), &agentv1.WaitProcessRequest{Process: &agentv1.ProcessRef{ContainerId: id, ExecId: exec}})
	if err != nil {
		t.Fatalf("WaitProcess(%s/%s) = %v", id, exec, err)
	}
	return r
}

// leftovers lists what a deleted container could have left behind.
func leftovers(t *testing.T, stateDir, id string, pid uint32) []string {
	t.Helper()
	var found []string
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	cdir := filepath.Join(stateDir, "containers", id)
	for _, line := range strings.Split(string(mi), "\n") {
		if strings.Contains(line, cdir) {
			found = append(found, "mount: "+line)
		}
	}
	for _, p := range []string{cdir, filepath.Join(stateDir, "libcontainer", id)} {
		if _, err := os.Stat(p); err == nil {
			found = append(found, "path: "+p)
		}
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/confguest/" + id)
	if v2, _ := filepath.Glob("/sys/fs/cgroup/confguest/" + id); len(v2) > 0 {
		cgs = append(cgs, v2...)
	}
	for _, c := range cgs {
		found = append(found, "cgroup: "+c)
	}
	if pid != 0 {
		if _, err := os.Stat(filepath.Join("/proc", itoa(pid))); err == nil {
			found = append(found, "process: "+itoa(pid))
		}
	}
	return found
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func specsMount(dst, src string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "ro"}}
}
