package qemutests

// A pod through containerd's CRI and crictl: the pod is one VM, its containers' rootfs disks
// are hot-added to it, and nothing is left after the pod is removed.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"confguest/agent/api/policy"
)

// crictlBinary finds crictl ($CRICTL, PATH) or builds the pinned version with
// deploy/build-crictl.sh.
func crictlBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CRICTL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	out, err := exec.Command("bash", filepath.Join(repoRoot(), "deploy", "build-crictl.sh")).Output()
	if err != nil {
		missing(t, "crictl unavailable (deploy/build-crictl.sh: %v)", err)
	}
	return strings.TrimSpace(string(out))
}

// crictl runs crictl against the private containerd's CRI.
func (e *ctrdEnv) crictl(bin string, args ...string) cliResult {
	e.t.Helper()
	r, err := e.tryCrictl(bin, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// tryCrictl is crictl for goroutines other than the test's: it returns the error of a
// crictl that could not run instead of failing the test.
func (e *ctrdEnv) tryCrictl(bin string, args ...string) (cliResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ep := "unix://" + e.sock
	cmd := exec.CommandContext(ctx, bin, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "4m"}, args...)...)
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE="+filepath.Join(e.dir, "crictl.yaml"))
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		return cliResult{}, fmt.Errorf("crictl %q: %w", args, err)
	}
	return cliResult{out.String(), errOut.String(), code}, nil
}

func (e *ctrdEnv) mustCrictl(bin string, args ...string) string {
	e.t.Helper()
	r := e.crictl(bin, args...)
	if r.code != 0 {
		e.t.Fatalf("crictl %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// writeJSON writes v as JSON to a file in the test's temporary folder.
func writeJSONFile(t *testing.T, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// podConfig is a host-network pod (no CNI needed) with the given annotations.
func podConfig(t *testing.T, name string, annotations map[string]string) string {
	return podConfigOn(t, name, annotations, true)
}

// podConfigOn is a pod on the host's network or, with hostNetwork false, on the CRI
// network (namespace_options.network = POD; containerd runs CNI for it).
func podConfigOn(t *testing.T, name string, annotations map[string]string, hostNetwork bool) string {
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": "uid-" + name},
		"hostname":      name,
		"log_directory": filepath.Join(t.TempDir(), "logs"),
		"annotations":   annotations,
	}
	if hostNetwork {
		cfg["linux"] = map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}}
	}
	return writeJSONFile(t, name+"-pod.json", cfg)
}

func containerConfig(t *testing.T, name, image string, cmd ...string) string {
	return writeJSONFile(t, name+"-ctr.json", map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": image},
		"command":  cmd,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	})
}

// waitLogs waits until crictl logs of id contains want.
func (e *ctrdEnv) waitLogs(crictl, id, want string) string {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var r cliResult
	for time.Now().Before(deadline) {
		r = e.crictl(crictl, "logs", id)
		if strings.Contains(r.stdout, want) {
			return r.stdout
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("crictl logs %s never showed %q: stdout %q, stderr %q", id, want, r.stdout, r.stderr)
	return ""
}

// startCRI starts what every CRI test needs: containerd with its CRI plugin, the crictl
// binary, and the busybox tree (root) imported as the image tag, beside the pause image.
func startCRI(t *testing.T, tag string) (e *ctrdEnv, crictl, root, image string) {
	t.Helper()
	crictl = crictlBinary(t)
	e = startContainerd(t, ctrdOptions{cri: true})
	root = busyboxRoot(t)
	image = e.importDir(tag, root)
	e.importBusybox("confguest/pause:test")
	return e, crictl, root, image
}

// podDisks lists the container disk images in the run directories of e's pod VMs.
func podDisks(t *testing.T, e *ctrdEnv) []string {
	t.Helper()
	imgs, err := filepath.Glob(filepath.Join(e.runDir, "*", "ctr*.img"))
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

func TestShimCRIPod(t *testing.T) {
	e, crictl, root, image := startCRI(t, "confguest/busybox:test")
	// The pod's policy admits its containers and the exec commands below.
	p1 := podConfig(t, "p1", map[string]string{"confguest.io/policy": podPolicy(t, root, []policy.Exec{
		{Args: []policy.Match{anything, anything}, Env: []policy.Match{anything}},
		{Args: []policy.Match{anything, anything, anything}, Env: []policy.Match{anything}},
	})})

	start := time.Now()
	r := e.crictl(crictl, "runp", "--runtime", "confguest", p1)
	if predatesPolicies(r) {
		// An image from before policies: the same pod without one.
		t.Logf("the image's agent enforces no policy; running the pod without one")
		p1 = podConfig(t, "p1", nil)
		start = time.Now()
		r = e.crictl(crictl, "runp", "--runtime", "confguest", p1)
	}
	if r.code != 0 {
		t.Fatalf("crictl runp: exit %d\n%s", r.code, r.stderr)
	}
	pod := strings.TrimSpace(r.stdout)
	bootID := `cat /proc/sys/kernel/random/boot_id`
	c1 := e.mustCrictl(crictl, "create", pod, containerConfig(t, "c1", image, "sh", "-c", "echo c1 boot $("+bootID+"); exec sleep 1000"), p1)
	e.mustCrictl(crictl, "start", c1)
	out1 := e.waitLogs(crictl, c1, "c1 boot ")
	t.Logf("pod start (runp to first container output): %v", time.Since(start).Round(10*time.Millisecond))
	c2 := e.mustCrictl(crictl, "create", pod, containerConfig(t, "c2", image, "sh", "-c", "echo c2 boot $("+bootID+"); echo c2 err >&2; exec sleep 1000"), p1)
	e.mustCrictl(crictl, "start", c2)
	out2 := e.waitLogs(crictl, c2, "c2 boot ")

	t.Run("same VM", func(t *testing.T) {
		b1 := strings.Fields(out1[strings.Index(out1, "c1 boot "):])[2]
		b2 := strings.Fields(out2[strings.Index(out2, "c2 boot "):])[2]
		if b1 != b2 {
			t.Errorf("boot IDs differ: c1 %s, c2 %s; want one VM per pod", b1, b2)
		}
		if ents, _ := os.ReadDir(e.runDir); len(ents) != 1 {
			t.Errorf("%d VM run directories for one pod, want 1", len(ents))
		}
	})
	t.Run("one disk per image", func(t *testing.T) {
		// c1 and c2 have the same image, so the same rootfs disk: the second create
		// attached nothing new.
		if imgs := podDisks(t, e); len(imgs) != 1 {
			t.Errorf("container disks of the pod: %q, want one (both containers have one image)", imgs)
		}
		r := e.crictl(crictl, "exec", "-s", c2, "cat", "/proc/partitions")
		if r.code != 0 || !strings.Contains(r.stdout, " vdb\n") || strings.Contains(r.stdout, "vdc") {
			t.Errorf("crictl exec c2 cat /proc/partitions = exit %d, %q; want vda and vdb only", r.code, r.stdout)
		}
	})
	t.Run("logs", func(t *testing.T) {
		r := e.crictl(crictl, "logs", c2)
		if !strings.Contains(r.stderr, "c2 err") {
			t.Errorf("crictl logs c2: stderr %q, want c2 err", r.stderr)
		}
	})
	t.Run("exec", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			args   []string
			code   int
			out    string
			errOut string
		}{
			{"sync", []string{"exec", "-s", c1, "echo", "exec sync"}, 0, "exec sync", ""},
			// crictl exits 1 for a command that failed and names its exit code.
			{"sync exit code", []string{"exec", "-s", c2, "sh", "-c", "exit 3"}, 1, "", "exited with 3"},
			{"streaming", []string{"exec", c2, "sh", "-c", "echo streamed"}, 0, "streamed", ""},
			{"streaming exit code", []string{"exec", c1, "sh", "-c", "echo to stderr >&2; exit 4"}, 1, "", "to stderr\n"},
			{"streaming exit code named", []string{"exec", c1, "sh", "-c", "exit 4"}, 1, "", "exit code 4"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.crictl(crictl, tc.args...)
				if r.code != tc.code || !strings.Contains(r.stdout, tc.out) || !strings.Contains(r.stderr, tc.errOut) {
					t.Errorf("crictl %q = exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.out, tc.errOut)
				}
			})
		}
	})

	e.mustCrictl(crictl, "stop", "--timeout", "2", c1, c2)
	e.mustCrictl(crictl, "rm", c1, c2)
	e.mustCrictl(crictl, "stopp", pod)
	e.mustCrictl(crictl, "rmp", pod)
	e.checkNoLeftovers(pod)
	if r := e.crictl(crictl, "pods", "-q"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("crictl pods after rmp: %q", r.stdout)
	}
}
