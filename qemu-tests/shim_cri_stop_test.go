package qemutests

// Stopping and removing a pod always succeeds and always stops its VM: also when a
// container of the pod was never admitted by its policy, when its containers have already
// stopped, and when containers created alike share a policy entry and one of them is
// removed (the shim's default pod policy).

import (
	"strings"
	"testing"
	"time"
)

// waitState waits until crictl inspect of id shows state (CONTAINER_EXITED, ...).
func (e *ctrdEnv) waitState(crictl, id, state string) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var r cliResult
	for time.Now().Before(deadline) {
		r = e.crictl(crictl, "inspect", "-o", "go-template", "--template", "{{.status.state}}", id)
		if strings.TrimSpace(r.stdout) == state {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("crictl inspect %s: state %q (stderr %q), want %s", id, r.stdout, r.stderr, state)
}

// removePod stops and removes pod with crictl, each of which must succeed, and checks that
// nothing of it is left: no VM or shim process, no run directory (with its disks), no shim
// socket.
func (e *ctrdEnv) removePod(crictl, pod string) {
	e.t.Helper()
	for _, cmd := range []string{"stopp", "rmp"} {
		if r := e.crictl(crictl, cmd, pod); r.code != 0 {
			e.t.Errorf("crictl %s %s = exit %d, stderr %q; want success", cmd, pod, r.code, r.stderr)
		}
	}
	e.checkNoLeftovers(pod)
}

func TestShimCRIStopRemoveAlways(t *testing.T) {
	e, crictl, root, image := startCRI(t, "confguest/busybox:stop")

	t.Run("container never admitted", func(t *testing.T) {
		// The pod's policy admits sh -c SCRIPT only; the container runs sleep.
		podCfg := podConfig(t, "denied", map[string]string{"confguest.io/policy": podPolicy(t, root, nil)})
		pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)
		c := e.mustCrictl(crictl, "create", pod, containerConfig(t, "app", image, "sleep", "1000"), podCfg)
		if r := e.crictl(crictl, "start", c); r.code == 0 || !strings.Contains(r.stderr, "denied by policy") {
			t.Errorf("crictl start of a container the policy does not admit = exit %d, stderr %q; want the policy's denial", r.code, r.stderr)
		}
		e.removePod(crictl, pod)
	})

	t.Run("containers stopped", func(t *testing.T) {
		podCfg := podConfig(t, "stopped", nil)
		pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)
		var ids []string
		for _, name := range []string{"a", "b"} {
			id := e.mustCrictl(crictl, "create", pod, containerConfig(t, name, image, "sh", "-c", "echo "+name+" ran"), podCfg)
			e.mustCrictl(crictl, "start", id)
			ids = append(ids, id)
		}
		for _, id := range ids {
			e.waitState(crictl, id, "CONTAINER_EXITED")
		}
		e.removePod(crictl, pod)
	})

	t.Run("containers created alike", func(t *testing.T) {
		// Three containers created exactly alike (critest's stats test) are admitted
		// under the first one's policy entry; removing that one leaves the others
		// reachable, and the pod's stop kills the last while it runs.
		podCfg := podConfig(t, "alike", nil)
		pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)
		var ids []string
		for _, name := range []string{"alike0", "alike1", "alike2"} {
			// The names differ (CRI requires it) but reach the guest in no field.
			id := e.mustCrictl(crictl, "create", pod, containerConfig(t, name, image, "sleep", "1000"), podCfg)
			e.mustCrictl(crictl, "start", id)
			ids = append(ids, id)
		}
		e.mustCrictl(crictl, "rm", "-f", ids[0])
		if r := e.crictl(crictl, "stop", "--timeout", "1", ids[1]); r.code != 0 {
			t.Errorf("crictl stop of the second of three alike containers after the first was removed = exit %d, stderr %q", r.code, r.stderr)
		}
		e.removePod(crictl, pod)
	})
}
