package qemutests

// A CRI pod without the confguest.io/policy annotation: it boots with the pod base policy,
// and the shim admits each of its containers as it is created.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// containerMemory is the memory usage crictl stats reports for container id.
func (e *ctrdEnv) containerMemory(crictl, id string) uint64 {
	e.t.Helper()
	out := e.mustCrictl(crictl, "stats", "-o", "json", "--id", id)
	var st struct {
		Stats []struct {
			Attributes struct {
				ID string `json:"id"`
			} `json:"attributes"`
			Memory struct {
				// protobuf's JSON writes 64-bit integers as strings.
				WorkingSetBytes struct {
					Value json.RawMessage `json:"value"`
				} `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("crictl stats -o json: %v\n%s", err, out)
	}
	if len(st.Stats) != 1 || st.Stats[0].Attributes.ID != id {
		e.t.Fatalf("crictl stats --id %s: want the stats of that one container, got:\n%s", id, out)
	}
	v := strings.Trim(string(st.Stats[0].Memory.WorkingSetBytes.Value), `"`)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil && v != "" {
		e.t.Fatalf("crictl stats: memory working set %q: %v\n%s", v, err, out)
	}
	return n
}

func TestShimCRIDefaultPolicy(t *testing.T) {
	e, crictl, _, image := startCRI(t, "confguest/busybox:default")
	podCfg := podConfig(t, "dflt", nil)

	start := time.Now()
	pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)
	c1 := e.mustCrictl(crictl, "create", pod, containerConfig(t, "c1", image, "sh", "-c", "echo c1 up; exec sleep 1000"), podCfg)
	e.mustCrictl(crictl, "start", c1)
	e.waitLogs(crictl, c1, "c1 up")
	t.Logf("pod start (runp to first container output): %v", time.Since(start).Round(10*time.Millisecond))
	// The second container, of another image, replaces the policy; the first stays
	// reachable. Its rootfs differs, so it gets a disk of its own, hot-added.
	root2 := busyboxRoot(t)
	os.WriteFile(filepath.Join(root2, "etc", "variant"), []byte("the second image\n"), 0o644)
	image2 := e.importDir("confguest/busybox:variant", root2)
	c2 := e.mustCrictl(crictl, "create", pod, containerConfig(t, "c2", image2, "sh", "-c", "cat /etc/variant; exec sleep 1000"), podCfg)
	e.mustCrictl(crictl, "start", c2)
	e.waitLogs(crictl, c2, "the second image")
	if imgs := podDisks(t, e); len(imgs) != 2 {
		t.Errorf("container disks of the pod: %q, want two (two different images)", imgs)
	}

	// The ctrdEnv helpers fail the whole test, so the checks run here, not in subtests.
	for _, c := range []struct{ id, name string }{{c1, "first container"}, {c2, "second container"}} {
		r := e.crictl(crictl, "exec", "-s", c.id, "echo", "exec in the "+c.name)
		if r.code != 0 || !strings.Contains(r.stdout, "exec in the "+c.name) {
			t.Errorf("crictl exec -s in the %s = exit %d, stdout %q, stderr %q; want its output", c.name, r.code, r.stdout, r.stderr)
		}
	}
	n := e.containerMemory(crictl, c1)
	if n == 0 {
		t.Errorf("crictl stats %s: memory working set 0, want the container's usage in the guest", c1)
	}
	t.Logf("crictl stats: memory working set of the first container %d bytes", n)

	// Removing the first container drops its entry; the second keeps working.
	e.mustCrictl(crictl, "stop", "--timeout", "2", c1)
	e.mustCrictl(crictl, "rm", c1)
	r := e.crictl(crictl, "exec", "-s", c2, "echo", "still admitted")
	if r.code != 0 || !strings.Contains(r.stdout, "still admitted") {
		t.Errorf("crictl exec -s in the second container after the first was removed = exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	e.mustCrictl(crictl, "stop", "--timeout", "2", c2)
	e.mustCrictl(crictl, "rm", c2)
	e.mustCrictl(crictl, "stopp", pod)
	e.mustCrictl(crictl, "rmp", pod)
	e.checkNoLeftovers(pod)
	if r := e.crictl(crictl, "pods", "-q"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("crictl pods after rmp: %q", r.stdout)
	}
}
