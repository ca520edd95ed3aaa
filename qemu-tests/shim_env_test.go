package qemutests

// A private containerd (Debian's) for the shim tests: its own config, root, state,
// sockets and shim run directory under one short temporary directory, with
// containerd-shim-confguest-v2 built from this tree first on its PATH.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const shimRuntime = "io.containerd.confguest.v2"

// shimBinary builds the shim once per test run and returns the folder holding it (and
// nothing else), for containerd's PATH.
func shimBinary(t *testing.T) string {
	return filepath.Dir(hostBinary(t, "./hostside/cmd/containerd-shim-confguest-v2"))
}

// ctrdEnv is one running private containerd.
type ctrdEnv struct {
	t       *testing.T
	dir     string // everything lives here
	runDir  string // the shim's VM run directories
	sock    string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	exited  chan struct{}
	ctrPath string
	ns      string // containerd namespace of ctr commands: "test", or "k8s.io" with CRI
	cni     *cniBridge
}

// ctrdOptions add to containerd's config.
type ctrdOptions struct {
	cri     bool   // enable the CRI plugin (restrict_oom_score_adj = true)
	extra   string // more TOML
	shimCfg string // extra JSON fields for the shim config, e.g. `"cpus": 1`
	// cni gives the CRI plugin a CNI bridge network of its own (Debian's
	// containernetworking-plugins): a new bridge on a private subnet, no masquerade,
	// removed with containerd. Without it pods must use the host's network.
	cni *cniBridge
}

// cniBridge is a CNI bridge network for the tests' pods.
type cniBridge struct {
	bridge string // a name no interface of this machine has
	subnet string // a private /24 no route of this machine covers
}

// setUp writes the network's CNI configuration into dir's cni-conf and links the plugins it
// uses into cni-bin; the bridge appears with the first pod.
func (n *cniBridge) setUp(t *testing.T, dir string) {
	t.Helper()
	if _, err := net.InterfaceByName(n.bridge); err == nil {
		t.Fatalf("network interface %s exists already: remove it (ip link del %s)", n.bridge, n.bridge)
	}
	if out, _ := exec.Command("ip", "-o", "route", "show", "table", "all").Output(); strings.Contains(string(out), strings.TrimSuffix(n.subnet, "0/24")) {
		t.Fatalf("subnet %s is in use on this machine: %s", n.subnet, out)
	}
	for _, d := range []string{"cni-bin", "cni-conf"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		src := filepath.Join("/usr/lib/cni", p)
		if _, err := os.Stat(src); err != nil {
			missing(t, "CNI plugin %s not found: apt-get install containernetworking-plugins", src)
		}
		if err := os.Symlink(src, filepath.Join(dir, "cni-bin", p)); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "confguest-test", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
`, n.bridge, filepath.Join(dir, "cni-ipam"), n.subnet)
	if err := os.WriteFile(filepath.Join(dir, "cni-conf", "10-confguest-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// remove deletes the bridge (CNI's DEL leaves it).
func (n *cniBridge) remove() {
	if _, err := net.InterfaceByName(n.bridge); err == nil {
		exec.Command("ip", "link", "del", n.bridge).Run()
	}
}

// startContainerd starts Debian's containerd as root with a private configuration.
func startContainerd(t *testing.T, o ctrdOptions) *ctrdEnv {
	t.Helper()
	img := needImage(t)
	vhost := vhostDeviceVsock(t)
	if os.Geteuid() != 0 {
		missing(t, "the shim tests run containerd and need root")
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		missing(t, "containerd not found: apt-get install containerd (build/apt-packages.txt)")
	}
	ctr, err := exec.LookPath("ctr")
	if err != nil {
		missing(t, "ctr not found: apt-get install containerd (build/apt-packages.txt)")
	}
	shims := shimBinary(t)
	dir, err := os.MkdirTemp("", "cgctd")
	if err != nil {
		t.Fatal(err)
	}
	e := &ctrdEnv{t: t, dir: dir, runDir: filepath.Join(dir, "vms"), sock: filepath.Join(dir, "c.sock"),
		log: &bytes.Buffer{}, exited: make(chan struct{}), ctrPath: ctr, ns: "test"}
	if o.cri {
		e.ns = "k8s.io"
	}
	disabled := `["io.containerd.grpc.v1.cri"]`
	cri := ""
	if o.cri {
		disabled = `[]`
		cri = fmt.Sprintf(`
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  sandbox_image = "confguest/pause:test"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.confguest]
      runtime_type = %q
      pod_annotations = ["confguest.io/*"]
`, filepath.Join(dir, "cni-bin"), filepath.Join(dir, "cni-conf"), shimRuntime)
	}
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = %s
[grpc]
  address = %q
[ttrpc]
  address = %q
%s
%s
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, e.sock, e.sock+".ttrpc", cri, o.extra)
	if o.cni != nil {
		o.cni.setUp(t, dir)
		e.cni = o.cni
	}
	shimCfg := fmt.Sprintf(`{"image_dir": %q, "accel": "tcg", "memory_mib": 256, "run_dir": %q, "vhost_device_vsock": %q, "boot_timeout_seconds": 150%s}`,
		img.Dir, e.runDir, vhost, map[bool]string{true: ", " + o.shimCfg, false: ""}[o.shimCfg != ""])
	// crictl reads its own config file; an empty one keeps it from looking elsewhere.
	for name, data := range map[string]string{"config.toml": conf, "shim.json": shimCfg, "crictl.yaml": "timeout: 240\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.cmd = exec.Command(bin, "--config", filepath.Join(dir, "config.toml"))
	e.cmd.Env = append(os.Environ(), "PATH="+shims+":"+os.Getenv("PATH"),
		"CONFGUEST_SHIM_CONFIG="+filepath.Join(dir, "shim.json"))
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	go func() { e.cmd.Wait(); close(e.exited) }()
	t.Cleanup(e.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if r := e.ctr("", "version"); r.code == 0 {
			break
		}
		select {
		case <-e.exited:
			t.Fatalf("containerd exited at start:\n%s", e.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer within 20s:\n%s", e.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return e
}

// stop ends containerd and every shim and VM it left, then removes the directory.
func (e *ctrdEnv) stop() {
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		e.cmd.Process.Kill()
		<-e.exited
	}
	if e.t.Failed() {
		e.t.Logf("containerd log (tail):\n%s", tail(e.log.String(), 60))
	}
	// Shims that outlived containerd (a test that failed half-way) and their VMs; a killed
	// shim's socket would stay behind.
	for _, p := range procsMentioning(e.dir) {
		var pid int
		fmt.Sscanf(p, "%d:", &pid)
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if f := strings.Fields(p); strings.Contains(p, "containerd-shim-confguest-v2") {
			for i := range f[:len(f)-1] {
				if f[i] == "-id" {
					os.Remove(e.shimSocket(f[i+1]))
				}
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	if e.cni != nil {
		e.cni.remove()
	}
	exec.Command("umount", "-R", filepath.Join(e.dir, "root")).Run()
	// Mounts under state (bundle rootfs) would make RemoveAll fail; unmount what is left.
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) > 4 && strings.HasPrefix(f[4], e.dir) {
				syscall.Unmount(f[4], syscall.MNT_DETACH)
			}
		}
	}
	os.RemoveAll(e.dir)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ctr runs ctr against this containerd in its namespace with stdin.
func (e *ctrdEnv) ctr(stdin string, args ...string) cliResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.ctrPath, append([]string{"--address", e.sock, "--namespace", e.ns}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("ctr %q: %v", args, err)
	}
	return cliResult{out.String(), errOut.String(), code}
}

// mustCtr runs ctr and fails the test on a non-zero exit.
func (e *ctrdEnv) mustCtr(args ...string) string {
	e.t.Helper()
	r := e.ctr("", args...)
	if r.code != 0 {
		e.t.Fatalf("ctr %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// importBusybox builds a one-layer busybox image as a docker-save tarball and imports it;
// it returns the image's name as containerd lists it.
func (e *ctrdEnv) importBusybox(tag string) string {
	e.t.Helper()
	return e.importDir(tag, busyboxRoot(e.t))
}

// importDir imports a one-layer image of dir under tag and returns its name.
func (e *ctrdEnv) importDir(tag, dir string) string {
	e.t.Helper()
	img := dirImage(e.t, dir)
	ref, err := name.NewTag(tag)
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		e.t.Fatal(err)
	}
	before := e.mustCtr("images", "ls", "-q")
	e.mustCtr("images", "import", path)
	for _, n := range strings.Fields(e.mustCtr("images", "ls", "-q")) {
		if !strings.Contains(before, n) && strings.HasSuffix(n, tag) {
			return n
		}
	}
	e.t.Fatalf("imported %s but containerd does not list it", tag)
	return ""
}

// shimSocket is where containerd's shim library puts the socket of the shim serving group
// (a container or pod ID).
func (e *ctrdEnv) shimSocket(group string) string {
	return shimSocketPath(e.sock, e.ns, group)
}

// shimSocketPath is the socket of the shim of group for the containerd listening on sock,
// in namespace ns.
func shimSocketPath(sock, ns, group string) string {
	d := sha256.Sum256([]byte(filepath.Join(sock, ns, group)))
	return filepath.Join("/run/containerd/s", hex.EncodeToString(d[:]))
}

// checkNoLeftovers fails if a shim or VM process, VM run directory (with its disks) or the
// shim socket of one of groups is left.
func (e *ctrdEnv) checkNoLeftovers(groups ...string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var procs []string
	for {
		procs = procsMentioning(e.runDir)
		for _, p := range procsMentioning(e.sock) {
			if strings.Contains(p, "containerd-shim-confguest-v2") {
				procs = append(procs, p)
			}
		}
		if len(procs) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range procs {
		e.t.Errorf("leftover VM or shim process: %s", p)
	}
	ents, _ := os.ReadDir(e.runDir)
	for _, ent := range ents {
		e.t.Errorf("leftover VM run directory: %s", ent.Name())
	}
	for _, g := range groups {
		if _, err := os.Stat(e.shimSocket(g)); err == nil {
			e.t.Errorf("leftover shim socket of %s: %s", g, e.shimSocket(g))
		}
	}
}
