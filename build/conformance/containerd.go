package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ctrdConfig is what the private containerd is started with.
type ctrdConfig struct {
	dir        string   // root, state, sockets, CNI and registry configuration live here
	pause      string   // the pod sandbox image
	registry   string   // host:port of the local registry
	mirrored   []string // registry hosts whose pulls go to the local registry
	cniBinDir  string   // Debian's containernetworking-plugins
	imageDir   string   // the guest image (make image's out/)
	vhostVsock string   // the vhost-device-vsock binary
	accel      string   // the shim's accel setting
	shimCache  string   // the shim's cache_dir (its disk cache is disks/ in it); empty: its default
}

func (c ctrdConfig) sock() string { return filepath.Join(c.dir, "c.sock") }

// files are the configuration files of c, by path relative to c.dir: containerd's
// config.toml (CRI with the runtime handlers runc and confguest, CNI, registry
// configuration), the shim's configuration, and one hosts.toml per registry host sending
// its pulls to the local registry over plain HTTP (and nowhere else).
func (c ctrdConfig) files() (map[string]string, error) {
	files := map[string]string{}
	files["config.toml"] = fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.confguest]
      runtime_type = "io.containerd.confguest.v2"
      pod_annotations = ["confguest.io/*"]
`, filepath.Join(c.dir, "root"), filepath.Join(c.dir, "state"), c.sock(), c.sock()+".ttrpc",
		c.pause, c.cniBinDir, filepath.Join(c.dir, "cni"), filepath.Join(c.dir, "certs.d"))
	shimCfg := map[string]any{
		"image_dir":            c.imageDir,
		"accel":                c.accel,
		"run_dir":              filepath.Join(c.dir, "vms"),
		"vhost_device_vsock":   c.vhostVsock,
		"boot_timeout_seconds": 150,
	}
	if c.shimCache != "" {
		shimCfg["cache_dir"] = c.shimCache
	}
	shim, err := json.MarshalIndent(shimCfg, "", "  ")
	if err != nil {
		return nil, err
	}
	files["shim.json"] = string(shim)
	for _, h := range append([]string{c.registry}, c.mirrored...) {
		files[filepath.Join("certs.d", h, "hosts.toml")] = fmt.Sprintf(`server = "http://%s"
[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, c.registry, c.registry)
	}
	return files, nil
}

// ctrd is the running private containerd.
type ctrd struct {
	cfg    ctrdConfig
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
}

// startContainerd writes c's configuration and starts Debian's containerd with it, the
// shim built from this tree (shimDir) first on its PATH; its log goes to logPath.
func startContainerd(ctx context.Context, c ctrdConfig, shimDir, logPath string) (*ctrd, error) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd not found: install Debian's containerd (make setup)")
	}
	files, err := c.files()
	if err != nil {
		return nil, err
	}
	for name, data := range files {
		p := filepath.Join(c.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			return nil, err
		}
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", filepath.Join(c.dir, "config.toml"))
	cmd.Env = append(os.Environ(), "PATH="+shimDir+":"+os.Getenv("PATH"),
		"CONFGUEST_SHIM_CONFIG="+filepath.Join(c.dir, "shim.json"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	d := &ctrd{cfg: c, cmd: cmd, log: logf, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(c.sock()); err == nil {
			if exec.CommandContext(ctx, "ctr", "--address", c.sock(), "version").Run() == nil {
				return d, nil
			}
		}
		select {
		case <-d.exited:
			return nil, fmt.Errorf("containerd exited at start: see %s", logPath)
		case <-ctx.Done():
			d.stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("containerd did not answer on %s within 30s: see %s", c.sock(), logPath)
		}
	}
}

// stop ends containerd, then every shim and VM of this containerd still running (their
// command lines name its directory), and unmounts what is left under the directory.
func (d *ctrd) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
	d.log.Close()
	for _, pid := range pidsMentioning(d.cfg.dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(500 * time.Millisecond)
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mounts []string
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], d.cfg.dir+"/") {
				mounts = append(mounts, f[4])
			}
		}
		for i := len(mounts) - 1; i >= 0; i-- {
			syscall.Unmount(mounts[i], syscall.MNT_DETACH)
		}
	}
}

// pidsMentioning lists the processes whose command line contains s (not this one).
func pidsMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}
