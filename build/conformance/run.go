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
	Host
	Handler string // CRI runtime handler critest uses: confguest or runc
	Focus   string // -ginkgo.focus; empty runs every spec
	OutDir  string // critest's log and report, containerd's log
	Log     io.Writer
}

// Run runs critest once and returns its summary; the error says why it could not run.
func Run(ctx context.Context, o Options) (sum Summary, err error) {
	start := time.Now()
	if o.Handler != "confguest" && o.Handler != "runc" {
		return sum, fmt.Errorf("runtime handler %q: want confguest or runc", o.Handler)
	}
	skips, err := parseSkips(skipList)
	if err != nil {
		return sum, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return sum, err
	}
	fmt.Fprintln(o.Log, "conformance: building critest (cached under $CONFGUEST_CACHE)")
	critest, err := runScript(ctx, o.Repo, o.Log, "deploy/build-cri-tools.sh", "critest")
	if err != nil {
		return sum, err
	}
	rt, err := StartRuntime(ctx, RuntimeOptions{Host: o.Host,
		LogPath: filepath.Join(o.OutDir, "containerd-"+o.Handler+".log"), Log: o.Log})
	if err != nil {
		return sum, err
	}
	defer func() {
		if closeErr := rt.Close(); closeErr != nil && err == nil {
			err = closeErr
		}
	}()

	report := filepath.Join(o.OutDir, "critest-"+o.Handler+".json")
	logPath := filepath.Join(o.OutDir, "critest-"+o.Handler+".log")
	args := []string{
		"-runtime-endpoint", rt.Endpoint, "-image-endpoint", rt.Endpoint, "-runtime-handler", o.Handler,
		"-config", filepath.Join(rt.Dir, "crictl.yaml"),
		"-ginkgo.skip", skipRegexp(skips), "-ginkgo.json-report", report,
		"-ginkgo.no-color", "-ginkgo.v", "-ginkgo.timeout", "6h",
	}
	if o.Focus != "" {
		args = append(args, "-ginkgo.focus", o.Focus)
	}
	fmt.Fprintf(o.Log, "conformance: running critest against the runtime handler %s (log: %s)\n", o.Handler, logPath)
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

// runScript runs a script of the repository and returns the last line it printed (a path).
func runScript(ctx context.Context, repo string, log io.Writer, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(repo, name)}, args...)...)
	cmd.Stderr = log
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// debianSources fetches the Debian packages the images are built from (this machine's
// suite, through build/debfetch.sh: its archive, nothing installed).
func debianSources(ctx context.Context, repo string, log io.Writer) (sources, error) {
	suite, err := debianSuite()
	if err != nil {
		return sources{}, err
	}
	dirs := map[string]string{}
	var roots []string
	for _, p := range []string{"busybox", "nginx", "apache2-bin", "libapr1", "libaprutil1"} {
		d, err := runScript(ctx, repo, log, "build/debfetch.sh", suite, p)
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
