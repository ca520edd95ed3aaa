// Package conformance runs Kubernetes' CRI validation suite (critest, cri-tools v1.30.0)
// against a private containerd with the runtime handlers confguest and runc: Debian's
// containerd 1.6.20, a CNI bridge of its own (Debian's containernetworking-plugins), and a
// registry on 127.0.0.1 serving every image critest pulls, built here from Debian packages.
// Nothing leaves this machine: containerd's registry configuration sends critest's image
// names to the local registry only.
package conformance

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

//go:embed skips.txt
var skipList []byte

// Options configure one run.
type Options struct {
	Repo     string // the repository root (scripts under build/ and deploy/, the nnp program)
	ImageDir string // the guest image (make image's out/)
	Shim     string // containerd-shim-confguest-v2 built from this tree
	Handler  string // CRI runtime handler critest uses: confguest or runc
	Focus    string // -ginkgo.focus; empty runs every spec
	OutDir   string // critest's log and report, containerd's log
	Bridge   string // CNI bridge name
	Subnet   string // CNI subnet
	Accel    string // the shim's QEMU accelerator: auto, tcg or kvm
	Log      io.Writer
}

// Run runs critest once and returns its summary; the error says why it could not run.
func Run(ctx context.Context, o Options) (sum Summary, err error) {
	start := time.Now()
	if o.Handler != "confguest" && o.Handler != "runc" {
		return sum, fmt.Errorf("runtime handler %q: want confguest or runc", o.Handler)
	}
	if os.Geteuid() != 0 {
		return sum, errors.New("conformance runs containerd and creates a network bridge: run it as root")
	}
	skips, err := parseSkips(skipList)
	if err != nil {
		return sum, err
	}
	for _, f := range []string{"bzImage", "initramfs.cpio.gz", "rootfs.img", "cmdline"} {
		if _, err := os.Stat(filepath.Join(o.ImageDir, f)); err != nil {
			return sum, fmt.Errorf("guest image: %w: run make image", err)
		}
	}
	if _, err := os.Stat(o.Shim); err != nil {
		return sum, fmt.Errorf("shim: %w: run make build", err)
	}
	cniBin := "/usr/lib/cni"
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBin, p)); err != nil {
			return sum, fmt.Errorf("CNI plugin %s: %w: install Debian's containernetworking-plugins (make setup)", p, err)
		}
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return sum, err
	}

	step := func(format string, args ...any) {
		fmt.Fprintf(o.Log, "conformance: "+format+"\n", args...)
	}
	step("building critest and crictl (cached under $CONFGUEST_CACHE)")
	critest, err := o.script(ctx, "deploy/build-cri-tools.sh", "critest")
	if err != nil {
		return sum, err
	}
	crictl, err := o.script(ctx, "deploy/build-cri-tools.sh", "crictl")
	if err != nil {
		return sum, err
	}
	vhost, err := o.script(ctx, "build/debpin.sh", "vhost-device-vsock")
	if err != nil {
		return sum, err
	}
	step("fetching the Debian packages of the test images")
	src, err := o.sources(ctx)
	if err != nil {
		return sum, err
	}

	dir, err := os.MkdirTemp("", "cgconf")
	if err != nil {
		return sum, err
	}
	defer os.RemoveAll(dir)
	src.nnp = filepath.Join(dir, "nnp")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", src.nnp, "./build/conformance/nnp")
	build.Dir, build.Env = o.Repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return sum, fmt.Errorf("go build ./build/conformance/nnp: %w\n%s", err, out)
	}

	reg, err := startRegistry()
	if err != nil {
		return sum, err
	}
	defer reg.close()
	pause := reg.addr + "/confguest/pause:conformance"
	step("building the test images and pushing them to the registry on %s", reg.addr)
	imgs, err := buildImages(ctx, src, pause)
	if err != nil {
		return sum, err
	}
	for _, img := range imgs {
		if err := reg.push(ctx, img); err != nil {
			return sum, err
		}
	}
	hosts, err := registryHosts(imgs)
	if err != nil {
		return sum, err
	}

	network := cniNetwork{bridge: o.Bridge, subnet: o.Subnet, dataDir: filepath.Join(dir, "cni-ipam")}
	if err := network.checkFree(); err != nil {
		return sum, err
	}
	conflist, err := network.conflist()
	if err != nil {
		return sum, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o700); err != nil {
		return sum, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-conformance.conflist"), conflist, 0o600); err != nil {
		return sum, err
	}
	// The bridge plugin turns on IPv4 forwarding for its gateway; put it back afterwards.
	if forward, err := sysctl("net.ipv4.ip_forward"); err == nil {
		defer setSysctl("net.ipv4.ip_forward", forward)
	}
	defer func() {
		if rmErr := network.remove(); rmErr != nil && err == nil {
			err = rmErr
		}
	}()

	shimDir := filepath.Join(dir, "shim")
	if err := os.MkdirAll(shimDir, 0o755); err != nil {
		return sum, err
	}
	if err := os.Symlink(o.Shim, filepath.Join(shimDir, filepath.Base(o.Shim))); err != nil {
		return sum, err
	}
	cfg := ctrdConfig{dir: dir, pause: pause, registry: reg.addr, mirrored: hosts, cniBinDir: cniBin,
		imageDir: o.ImageDir, vhostVsock: filepath.Join(vhost, "usr", "bin", "vhost-device-vsock"), accel: o.Accel}
	step("starting containerd (log: %s)", filepath.Join(o.OutDir, "containerd-"+o.Handler+".log"))
	d, err := startContainerd(ctx, cfg, shimDir, filepath.Join(o.OutDir, "containerd-"+o.Handler+".log"))
	if err != nil {
		return sum, err
	}
	endpoint := "unix://" + cfg.sock()
	defer func() {
		// Pods critest left behind (a failed spec's cleanup), then containerd and its shims.
		rm := exec.Command(crictl, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, "--timeout", "2m", "rmp", "--all", "--force")
		rm.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
		rm.Run()
		d.stop()
	}()

	report := filepath.Join(o.OutDir, "critest-"+o.Handler+".json")
	logPath := filepath.Join(o.OutDir, "critest-"+o.Handler+".log")
	args := []string{
		"-runtime-endpoint", endpoint, "-image-endpoint", endpoint, "-runtime-handler", o.Handler,
		"-config", filepath.Join(dir, "crictl.yaml"),
		"-ginkgo.skip", skipRegexp(skips), "-ginkgo.json-report", report,
		"-ginkgo.no-color", "-ginkgo.v", "-ginkgo.timeout", "6h",
	}
	if o.Focus != "" {
		args = append(args, "-ginkgo.focus", o.Focus)
	}
	step("running critest against the runtime handler %s (log: %s)", o.Handler, logPath)
	if err := runLogged(ctx, critest, args, logPath, o.Log); err != nil {
		if _, statErr := os.Stat(report); statErr != nil {
			return sum, fmt.Errorf("critest: %w: see %s", err, logPath)
		}
	}
	f, err := os.Open(report)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	sum, err = summarize(f, skips)
	if err != nil {
		return sum, err
	}
	sum.Wall = time.Since(start)
	return sum, nil
}

// script runs a script of the repository and returns the last line it printed (a path).
func (o Options) script(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(o.Repo, name)}, args...)...)
	cmd.Stderr = o.Log
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// sources fetches the Debian packages the images are built from (this machine's suite,
// through build/debfetch.sh: its archive, nothing installed).
func (o Options) sources(ctx context.Context) (sources, error) {
	suite, err := debianSuite()
	if err != nil {
		return sources{}, err
	}
	dirs := map[string]string{}
	var roots []string
	for _, p := range []string{"busybox", "nginx", "apache2-bin", "libapr1", "libaprutil1"} {
		d, err := o.script(ctx, "build/debfetch.sh", suite, p)
		if err != nil {
			return sources{}, err
		}
		dirs[p] = d
		roots = append(roots, d)
	}
	return sources{busybox: dirs["busybox"], nginx: dirs["nginx"], apache: dirs["apache2-bin"], roots: append(roots, "/")}, nil
}

// debianSuite is this machine's Debian release (VERSION_CODENAME of /etc/os-release).
func debianSuite() (string, error) {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", fmt.Errorf("find this machine's Debian release: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok && v != "" {
			return strings.Trim(v, `"`), nil
		}
	}
	return "", errors.New("/etc/os-release names no VERSION_CODENAME: conformance needs a Debian machine")
}

// runLogged runs bin with args, writing its output to logPath and one line per finished
// spec (ginkgo's verbose result line and the spec's name) to progress.
func runLogged(ctx context.Context, bin string, args []string, logPath string, progress io.Writer) error {
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		spec := ""
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			switch t := strings.TrimSpace(line); {
			case strings.HasPrefix(line, "[k8s.io] "):
				spec = line
			case strings.HasPrefix(t, "•") && spec != "":
				// "• [3.113 seconds]", "• [FAILED] [64.2 seconds]", "• [SKIPPED] ..."
				fmt.Fprintf(progress, "  %s %s\n", t, spec)
				spec = ""
			case strings.HasPrefix(t, "Ran "), strings.Contains(t, " Passed | "):
				fmt.Fprintln(progress, "  "+t)
			}
		}
		io.Copy(logf, pr)
	}()
	err = cmd.Wait()
	pw.Close()
	<-done
	return err
}
