package qemutests

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoakPods runs many pod lifecycles through containerd's CRI and the shim (make soak)
// and fails when anything the host holds for pods grows beyond the bounds in
// podSoakCounters. It runs only with CONFGUEST_SOAK=1; CONFGUEST_SOAK_PODS sets the number
// of pods (default 100).
//
// Each cycle runs a pod (a VM), creates and starts a container in it, waits for its
// output, runs an exec in it, stops and removes the container, then stops and removes the
// pod. The counters are read before the first cycle, after the checkpoint cycle (10, or
// half the cycles when there are fewer than 20) and after the last.
func TestSoakPods(t *testing.T) {
	cycles, checkpoint := soakLength(t, "CONFGUEST_SOAK_PODS", 100)
	e, crictl, _, image := startCRI(t, "confguest/busybox:soak")

	start := time.Now()
	var pods []string
	before := e.podSoakSample(t, pods)
	var atCheckpoint podSoakSnapshot
	durations := make([]time.Duration, 0, cycles)
	for i := 1; i <= cycles; i++ {
		cs := time.Now()
		name := fmt.Sprintf("soak%03d", i)
		podCfg := podConfig(t, name, nil)
		pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)
		pods = append(pods, pod)
		ctr := e.mustCrictl(crictl, "create", pod, containerConfig(t, name, image, "sh", "-c", "echo "+name+" up; exec sleep 1000"), podCfg)
		e.mustCrictl(crictl, "start", ctr)
		e.waitLogs(crictl, ctr, name+" up")
		if out := e.mustCrictl(crictl, "exec", "-s", ctr, "echo", "exec in "+name); out != "exec in "+name {
			t.Fatalf("cycle %d: crictl exec printed %q, want %q", i, out, "exec in "+name)
		}
		e.mustCrictl(crictl, "stop", "--timeout", "2", ctr)
		e.mustCrictl(crictl, "rm", ctr)
		e.mustCrictl(crictl, "stopp", pod)
		e.mustCrictl(crictl, "rmp", pod)
		durations = append(durations, time.Since(cs))
		if i == checkpoint {
			atCheckpoint = e.podSoakSample(t, pods)
		}
		if i%10 == 0 {
			t.Logf("%d pod lifecycles in %v", i, time.Since(start).Round(time.Second))
		}
	}
	after := e.podSoakSample(t, pods)
	wall := time.Since(start)

	slices.Sort(durations)
	t.Logf("%d pod lifecycles in %v: per pod median %v, 90th percentile %v, max %v", cycles, wall.Round(time.Second),
		durations[len(durations)/2].Round(time.Millisecond), durations[len(durations)*9/10].Round(time.Millisecond),
		durations[len(durations)-1].Round(time.Millisecond))
	rows, leaks := verdictOf(podSoakCounters, before, atCheckpoint, after, checkpoint, cycles)
	for _, r := range rows {
		t.Log(r)
	}
	for _, l := range leaks {
		t.Error(l)
	}
}

// podSoakSnapshot is what the host holds for pods that have all been removed.
type podSoakSnapshot struct {
	ctrdFDs, ctrdSockets   int // containerd's open files and sockets
	shims, vms             int // shim and VM (QEMU, vhost-device-vsock) processes
	shimSockets            int // shim sockets of removed pods still present
	runFiles, stateFiles   int // files under the shims' VM run directories and containerd's state
	mounts                 int // host mounts under the private containerd's directory
	selfFDs, selfGoroutine int // this test process's open files and goroutines
}

// podSoakCounters are what TestSoakPods compares. Every pod is gone when they are read, so
// nothing may grow from the checkpoint to the end, and processes, sockets, files and mounts
// of pods must be back at their count before the first pod. containerd's own open files
// may warm up before the checkpoint (its CRI plugin's clients and caches), not after.
var podSoakCounters = []soakCounter[podSoakSnapshot]{
	{"containerd open fds", func(s podSoakSnapshot) int64 { return int64(s.ctrdFDs) }, 0, 0, false},
	{"containerd sockets", func(s podSoakSnapshot) int64 { return int64(s.ctrdSockets) }, 0, 0, false},
	{"shim processes", func(s podSoakSnapshot) int64 { return int64(s.shims) }, 0, 0, true},
	{"VM processes", func(s podSoakSnapshot) int64 { return int64(s.vms) }, 0, 0, true},
	{"shim sockets left", func(s podSoakSnapshot) int64 { return int64(s.shimSockets) }, 0, 0, true},
	{"VM run dir files", func(s podSoakSnapshot) int64 { return int64(s.runFiles) }, 0, 0, true},
	{"containerd state files", func(s podSoakSnapshot) int64 { return int64(s.stateFiles) }, 0, 0, true},
	{"host mounts", func(s podSoakSnapshot) int64 { return int64(s.mounts) }, 0, 0, true},
	{"test open fds", func(s podSoakSnapshot) int64 { return int64(s.selfFDs) }, 0, 0, false},
	{"test goroutines", func(s podSoakSnapshot) int64 { return int64(s.selfGoroutine) }, 0, 0, false},
}

// podSoakSample reads the counters once the removed pods' processes have had a moment to
// exit; removed lists the pods removed so far.
func (e *ctrdEnv) podSoakSample(t *testing.T, removed []string) podSoakSnapshot {
	t.Helper()
	time.Sleep(2 * time.Second)
	var s podSoakSnapshot
	s.ctrdFDs, s.ctrdSockets = countFDs(t, "/proc/"+strconv.Itoa(e.cmd.Process.Pid)+"/fd")
	for _, p := range procsMentioning(e.sock) {
		if strings.Contains(p, "containerd-shim-confguest-v2") {
			s.shims++
		}
	}
	s.vms = len(procsMentioning(e.runDir))
	for _, pod := range removed {
		if _, err := os.Stat(e.shimSocket(pod)); err == nil {
			s.shimSockets++
		}
	}
	s.runFiles = countFiles(t, e.runDir)
	s.stateFiles = countFiles(t, filepath.Join(e.dir, "state"))
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], e.dir) {
				s.mounts++
			}
		}
	}
	s.selfFDs, _ = countFDs(t, "/proc/self/fd")
	s.selfGoroutine = runtime.NumGoroutine()
	return s
}

// countFiles counts the files (not directories) under dir; a missing dir has none.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case os.IsNotExist(err) && path == dir:
			return filepath.SkipDir
		case err != nil:
			return err
		case !d.IsDir():
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("count the files under %s: %v", dir, err)
	}
	return n
}
