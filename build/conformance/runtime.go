package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// RuntimeOptions configure the private container runtime of a node: Debian's containerd
// with the runtime handlers runc and confguest, a CNI bridge of its own and a registry on
// 127.0.0.1 serving the test images.
type RuntimeOptions struct {
	Host
	LogPath string // containerd's log
	// ShimCacheDir is the shim's cache_dir, which holds its disk cache (disks/ in it);
	// empty: the shim's default, $CONFGUEST_CACHE or ~/.cache/confguest.
	ShimCacheDir string
	Log          io.Writer
}

// Runtime is a running private containerd with its CNI bridge and registry.
type Runtime struct {
	Endpoint string // containerd's CRI endpoint, unix://...
	Dir      string // containerd's root, state, sockets and configuration
	Gateway  net.IP // the bridge's address: the pods' gateway, an address of this machine
	Pause    string // the pod sandbox image
	Busybox  string // the e2e busybox image reference (resolved by the local registry)
	Crictl   string // crictl built for containerd's CRI
	RunDir   string // the shim's VM run directories

	registry *localRegistry
	network  cniNetwork
	forward  string // net.ipv4.ip_forward before the bridge plugin turned it on
	ctrd     *ctrd
	cleanup  []func() error
}

// StartRuntime builds the tools and test images (cached where they are expensive), starts
// the registry, creates the bridge with its gateway address and starts containerd. On an
// error everything started is stopped again.
func StartRuntime(ctx context.Context, o RuntimeOptions) (_ *Runtime, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the private runtime runs containerd and creates a network bridge: run it as root")
	}
	for _, f := range []string{"bzImage", "initramfs.cpio.gz", "rootfs.img", "cmdline"} {
		if _, err := os.Stat(filepath.Join(o.ImageDir, f)); err != nil {
			return nil, fmt.Errorf("guest image: %w: run make image", err)
		}
	}
	if _, err := os.Stat(o.Shim); err != nil {
		return nil, fmt.Errorf("shim: %w: run make build", err)
	}
	cniBin := "/usr/lib/cni"
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBin, p)); err != nil {
			return nil, fmt.Errorf("CNI plugin %s: %w: install Debian's containernetworking-plugins (make setup)", p, err)
		}
	}
	step := func(format string, args ...any) { fmt.Fprintf(o.Log, "runtime: "+format+"\n", args...) }
	r := &Runtime{}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()

	step("building crictl (cached under $CONFGUEST_CACHE)")
	if r.Crictl, err = runScript(ctx, o.Repo, o.Log, "deploy/build-cri-tools.sh", "crictl"); err != nil {
		return nil, err
	}
	vhost, err := runScript(ctx, o.Repo, o.Log, "build/debpin.sh", "vhost-device-vsock")
	if err != nil {
		return nil, err
	}
	step("fetching the Debian packages of the test images")
	src, err := debianSources(ctx, o.Repo, o.Log)
	if err != nil {
		return nil, err
	}
	if r.Dir, err = os.MkdirTemp("", "cgrt"); err != nil {
		return nil, err
	}
	r.cleanup = append(r.cleanup, func() error { return os.RemoveAll(r.Dir) })
	src.nnp = filepath.Join(r.Dir, "nnp")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", src.nnp, "./build/conformance/nnp")
	build.Dir, build.Env = o.Repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./build/conformance/nnp: %w\n%s", err, out)
	}

	if r.registry, err = startRegistry(); err != nil {
		return nil, err
	}
	r.cleanup = append(r.cleanup, r.registry.close)
	r.Pause = r.registry.addr + "/confguest/pause:conformance"
	r.Busybox = e2ePrefix + "busybox:1.29-2"
	step("building the test images and pushing them to the registry on %s", r.registry.addr)
	imgs, err := buildImages(ctx, src, r.Pause)
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		if err := r.registry.push(ctx, img); err != nil {
			return nil, err
		}
	}
	hosts, err := registryHosts(imgs)
	if err != nil {
		return nil, err
	}

	r.network = cniNetwork{bridge: o.Bridge, subnet: o.Subnet, dataDir: filepath.Join(r.Dir, "cni-ipam")}
	conflist, err := r.network.conflist()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(r.Dir, "cni"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(r.Dir, "cni", "10-conformance.conflist"), conflist, 0o600); err != nil {
		return nil, err
	}
	// The bridge plugin turns on IPv4 forwarding for its gateway; it is put back on Close.
	if r.forward, err = sysctl("net.ipv4.ip_forward"); err != nil {
		return nil, fmt.Errorf("read net.ipv4.ip_forward: %w", err)
	}
	r.cleanup = append(r.cleanup, func() error { return setSysctl("net.ipv4.ip_forward", r.forward) })
	if r.Gateway, err = r.network.create(); err != nil {
		return nil, err
	}
	r.cleanup = append(r.cleanup, r.network.remove)

	shimDir := filepath.Join(r.Dir, "shim")
	if err := os.MkdirAll(shimDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(o.Shim, filepath.Join(shimDir, filepath.Base(o.Shim))); err != nil {
		return nil, err
	}
	cfg := ctrdConfig{dir: r.Dir, pause: r.Pause, registry: r.registry.addr, mirrored: hosts, cniBinDir: cniBin,
		imageDir: o.ImageDir, vhostVsock: filepath.Join(vhost, "usr", "bin", "vhost-device-vsock"), accel: o.Accel,
		shimCache: o.ShimCacheDir}
	r.RunDir = filepath.Join(r.Dir, "vms")
	step("starting containerd (log: %s)", o.LogPath)
	if r.ctrd, err = startContainerd(ctx, cfg, shimDir, o.LogPath); err != nil {
		return nil, err
	}
	r.Endpoint = "unix://" + cfg.sock()
	r.cleanup = append(r.cleanup, func() error {
		// Pods left behind (a failed spec's or test's cleanup), then containerd and its shims.
		rm := exec.Command(r.Crictl, "--runtime-endpoint", r.Endpoint, "--image-endpoint", r.Endpoint, "--timeout", "2m", "rmp", "--all", "--force")
		rm.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
		rm.Run()
		r.ctrd.stop()
		return nil
	})
	return r, nil
}

// Push stores img in the local registry under ref, whose host containerd resolves there
// (the host must be one of the test images' registries or the local registry itself).
func (r *Runtime) Push(ctx context.Context, ref string, img v1.Image) error {
	return r.registry.push(ctx, testImage{refs: []string{ref}, image: img})
}

// Registry is the local registry's host:port.
func (r *Runtime) Registry() string { return r.registry.addr }

// Close stops containerd (after removing every pod), removes the bridge, restores IPv4
// forwarding, stops the registry and removes the directory, in the reverse order of
// StartRuntime; it returns the first error.
func (r *Runtime) Close() error {
	var first error
	for i := len(r.cleanup) - 1; i >= 0; i-- {
		if err := r.cleanup[i](); err != nil && first == nil {
			first = err
		}
	}
	r.cleanup = nil
	return first
}
