package qemutests

// Many pods and containers at once, and a shim killed under a running pod: pods started at
// the same moment through containerd's CRI each boot their own VM; containers created at
// the same moment in one pod each get their own hot-added disk; after `kill -9` of a pod's
// shim, containerd's cleanup (the shim's delete command) leaves nothing behind.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// concurrentPods is how many pods TestShimCRIManyPods starts at once
// (CONFGUEST_CONCURRENT_PODS, default 8).
func concurrentPods(t *testing.T) int {
	v := os.Getenv("CONFGUEST_CONCURRENT_PODS")
	if v == "" {
		return 8
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 64 {
		t.Fatalf("CONFGUEST_CONCURRENT_PODS=%q: want a number of pods from 1 to 64", v)
	}
	return n
}

// podRun is one pod started by startPodAsync: its IDs, or the step that failed.
type podRun struct {
	name, pod, ctr string
	took           time.Duration // runp to the container's first output
	err            error
}

// startPodAsync runs a pod with one container that prints "<name> up" and sleeps, and
// waits for that line. It may run in any goroutine: it reports instead of failing the test.
func (e *ctrdEnv) startPodAsync(crictl, podCfg, ctrCfg, name string) (run podRun) {
	run.name = name
	start := time.Now()
	step := func(args ...string) string {
		if run.err != nil {
			return ""
		}
		r, err := e.tryCrictl(crictl, args...)
		if err == nil && r.code != 0 {
			err = fmt.Errorf("crictl %s: exit %d: %s", args[0], r.code, strings.TrimSpace(r.stderr))
		}
		run.err = err
		return strings.TrimSpace(r.stdout)
	}
	run.pod = step("runp", "--runtime", "confguest", podCfg)
	run.ctr = step("create", run.pod, ctrCfg, podCfg)
	step("start", run.ctr)
	for deadline := time.Now().Add(3 * time.Minute); run.err == nil; {
		r, err := e.tryCrictl(crictl, "logs", run.ctr)
		switch {
		case err != nil:
			run.err = err
		case strings.Contains(r.stdout, name+" up"):
			run.took = time.Since(start)
			return run
		case time.Now().After(deadline):
			run.err = fmt.Errorf("no %q in the container's log after 3 min (log %q)", name+" up", r.stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return run
}

func TestShimCRIManyPods(t *testing.T) {
	n := concurrentPods(t)
	e, crictl, _, image := startCRI(t, "confguest/busybox:many")
	podCfgs, ctrCfgs := make([]string, n), make([]string, n)
	for i := range n {
		name := fmt.Sprintf("many%d", i)
		podCfgs[i] = podConfig(t, name, nil)
		ctrCfgs[i] = containerConfig(t, name, image, "sh", "-c", "echo "+name+" up; exec sleep 1000")
	}

	runs := make([]podRun, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = e.startPodAsync(crictl, podCfgs[i], ctrCfgs[i], fmt.Sprintf("many%d", i))
		}()
	}
	wg.Wait()
	total := time.Since(start)

	var took []time.Duration
	var pods []string
	for _, r := range runs {
		if r.pod != "" {
			pods = append(pods, r.pod)
		}
		if r.err != nil {
			t.Errorf("pod %s: %v", r.name, r.err)
			continue
		}
		took = append(took, r.took)
	}
	slices.Sort(took)
	if len(took) > 0 {
		t.Logf("%d pods started at once: %d running; runp to first output: median %v, fastest %v, slowest %v; all running after %v",
			n, len(took), took[len(took)/2].Round(10*time.Millisecond), took[0].Round(10*time.Millisecond),
			took[len(took)-1].Round(10*time.Millisecond), total.Round(10*time.Millisecond))
	}
	t.Run("one VM each", func(t *testing.T) {
		if ents, _ := os.ReadDir(e.runDir); len(ents) != len(pods) {
			t.Errorf("%d VM run directories for %d pods, want one each", len(ents), len(pods))
		}
	})

	// Every pod is stopped and removed at the same moment too; each must succeed.
	errs := make([]error, len(pods))
	for i, pod := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, cmd := range []string{"stopp", "rmp"} {
				r, err := e.tryCrictl(crictl, cmd, pod)
				if err == nil && r.code != 0 {
					err = fmt.Errorf("crictl %s %s: exit %d: %s", cmd, pod, r.code, strings.TrimSpace(r.stderr))
				}
				if err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	e.checkNoLeftovers(pods...)
}

func TestShimCRIConcurrentCreates(t *testing.T) {
	const k = 4
	e, crictl, _, image := startCRI(t, "confguest/busybox:conc")
	// k images that differ in one file, so k disks are hot-added to the one VM at once.
	images := make([]string, k)
	for i := range k {
		root := busyboxRoot(t)
		if err := os.WriteFile(filepath.Join(root, "etc", "hello"), []byte(fmt.Sprintf("image %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		images[i] = e.importDir(fmt.Sprintf("confguest/conc%d:test", i), root)
	}
	podCfg := podConfig(t, "conc", nil)
	pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)
	// A first container, to look at the guest's disks from.
	first := e.mustCrictl(crictl, "create", pod, containerConfig(t, "first", image, "sh", "-c", "echo first up; exec sleep 1000"), podCfg)
	e.mustCrictl(crictl, "start", first)
	e.waitLogs(crictl, first, "first up")

	ids := make([]string, k)
	errs := make([]error, k)
	cfgs := make([]string, k)
	for i := range k {
		cfgs[i] = containerConfig(t, fmt.Sprintf("c%d", i), images[i], "sh", "-c", "cat /etc/hello; exec sleep 1000")
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, args := range [][]string{{"create", pod, cfgs[i], podCfg}, {"start"}} {
				if args[0] == "start" {
					args = append(args, ids[i])
				}
				r, err := e.tryCrictl(crictl, args...)
				if err == nil && r.code != 0 {
					err = fmt.Errorf("crictl %s: exit %d: %s", args[0], r.code, strings.TrimSpace(r.stderr))
				}
				if err != nil {
					errs[i] = fmt.Errorf("container c%d: %w", i, err)
					return
				}
				if args[0] == "create" {
					ids[i] = strings.TrimSpace(r.stdout)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d containers created and started at once in one pod in %v", k, time.Since(start).Round(10*time.Millisecond))
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		// Each container sees its own image's disk, not one attached for another.
		e.waitLogs(crictl, id, fmt.Sprintf("image %d\n", i))
	}
	if imgs := podDisks(t, e); len(imgs) != k+1 {
		t.Errorf("container disks of the pod: %q, want %d (one per distinct image)", imgs, k+1)
	}
	r := e.crictl(crictl, "exec", "-s", first, "cat", "/proc/partitions")
	for _, dev := range []string{"vdb", "vdc", "vdd", "vde", "vdf"} {
		if !strings.Contains(r.stdout, " "+dev+"\n") {
			t.Errorf("guest /proc/partitions lacks %s: %q", dev, r.stdout)
		}
	}
	e.removePod(crictl, pod)
}

// shimPIDOf returns the PID of the shim serving group (a pod ID), or 0.
func (e *ctrdEnv) shimPIDOf(group string) int {
	for _, p := range procsMentioning(e.sock) {
		if strings.Contains(p, "containerd-shim-confguest-v2") && strings.Contains(p, " -id "+group+" ") {
			pid, _ := strconv.Atoi(p[:strings.IndexByte(p, ':')])
			return pid
		}
	}
	return 0
}

func TestShimKill(t *testing.T) {
	e, crictl, _, image := startCRI(t, "confguest/busybox:shimkill")
	podCfg := podConfig(t, "shimkill", nil)
	pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)
	ctr := e.mustCrictl(crictl, "create", pod, containerConfig(t, "victim", image, "sh", "-c", "echo victim up; exec sleep 1000"), podCfg)
	e.mustCrictl(crictl, "start", ctr)
	e.waitLogs(crictl, ctr, "victim up")

	shim := e.shimPIDOf(pod)
	if shim == 0 {
		t.Fatalf("no shim process serving pod %s among %q", pod, procsMentioning(e.sock))
	}
	if vms := procsMentioning(e.runDir); len(vms) == 0 {
		t.Fatalf("no VM process under %s before the kill", e.runDir)
	}
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 shim %d: %v", shim, err)
	}
	killed := time.Now()

	// containerd notices the shim is gone and runs its delete command, which stops the
	// pod's VM; the container is reported exited, not left running.
	deadline := time.Now().Add(90 * time.Second)
	for len(procsMentioning(e.runDir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if vms := procsMentioning(e.runDir); len(vms) > 0 {
		t.Errorf("VM processes still running 90 s after kill -9 of the shim: %q", vms)
	} else {
		t.Logf("the pod's VM was stopped %v after kill -9 of its shim", time.Since(killed).Round(10*time.Millisecond))
	}
	e.waitState(crictl, ctr, "CONTAINER_EXITED")
	if r := e.crictl(crictl, "rm", ctr); r.code != 0 {
		t.Errorf("crictl rm %s after the shim was killed = exit %d, %q; want success", ctr, r.code, r.stderr)
	}
	e.removePod(crictl, pod)
	if r := e.crictl(crictl, "pods", "-q"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("crictl pods after rmp: %q", r.stdout)
	}
}
