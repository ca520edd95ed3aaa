package qemutests

// Resources of a CRI pod in the guest: the VM is sized from the pod's limits, the pod's
// sysctls are set in its namespaces, its containers share /dev/shm, crictl stats reads a
// container's cgroup, crictl update changes its limits there, and an update the pod's
// policy does not allow is refused naming the rule.

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"confguest/agent/api/policy"
)

// The pod's limits and the VM they give under the tests' shim config (startContainerd:
// cpus 1, memory_mib 256): 1 + 1 vCPU, 256 + 256 MiB.
const (
	resPodMemory  = 256 << 20
	resVMMemoryMB = 256 + 256
	resVMCPUs     = 2
)

func TestShimCRIResources(t *testing.T) {
	e, crictl, root, image := startCRI(t, "confguest/busybox:res")
	podCfg := writeJSONFile(t, "res-pod.json", map[string]any{
		"metadata":      map[string]any{"name": "res", "namespace": "default", "uid": "uid-res"},
		"hostname":      "res",
		"log_directory": filepath.Join(t.TempDir(), "logs"),
		"linux": map[string]any{
			"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}},
			// critest's safe and unsafe sysctls: both of the pod's IPC namespace.
			"sysctls":   map[string]string{"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100"},
			"resources": map[string]any{"memory_limit_in_bytes": resPodMemory, "cpu_quota": 100000, "cpu_period": 100000},
		},
	})
	pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)
	ctr := writeJSONFile(t, "app-ctr.json", map[string]any{
		"metadata": map[string]any{"name": "app"},
		"image":    map[string]any{"image": image},
		"command": []string{"sh", "-c", `echo "shm_rmid_forced $(cat /proc/sys/kernel/shm_rmid_forced)"; ` +
			`echo "msg_max $(cat /proc/sys/fs/mqueue/msg_max)"; echo "from app" > /dev/shm/app; echo started; ` +
			// Some memory to count: 8 MiB in the container's /tmp (tmpfs, charged to it).
			`busybox dd if=/dev/zero of=/tmp/fill bs=1M count=8 2>/dev/null; exec sleep 1000`},
		"log_path": "app.log",
		"linux":    map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 64 << 20}},
	})
	app := e.mustCrictl(crictl, "create", pod, ctr, podCfg)
	e.mustCrictl(crictl, "start", app)
	logs := e.waitLogs(crictl, app, "started")
	// exec runs a command in a container for subtest t; a failure fails t.
	exec := func(t *testing.T, id string, args ...string) string {
		t.Helper()
		r := e.crictl(crictl, append([]string{"exec", "-s", id}, args...)...)
		if r.code != 0 {
			t.Fatalf("crictl exec %s %q: exit %d, stdout %q, stderr %q", id, args, r.code, r.stdout, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}

	t.Run("VM sized from the pod", func(t *testing.T) {
		var memKB int
		for _, l := range strings.Split(exec(t, app, "cat", "/proc/meminfo"), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				memKB, _ = strconv.Atoi(f[1])
			}
		}
		// MemTotal is RAM less what the kernel keeps: well above the 256 MiB of a VM
		// without limits, at most the VM's.
		if memKB <= 400<<10 || memKB > resVMMemoryMB<<10 {
			t.Errorf("guest MemTotal = %d kB, want 400 MiB < MemTotal <= %d MiB (256 MiB + the pod's 256 MiB limit)", memKB, resVMMemoryMB)
		}
		if n := strings.Count(exec(t, app, "cat", "/proc/cpuinfo"), "processor\t:"); n != resVMCPUs {
			t.Errorf("guest vCPUs = %d, want %d (1 + the pod's 1 CPU limit)", n, resVMCPUs)
		}
		t.Logf("pod VM: MemTotal %d kB", memKB)
	})

	t.Run("pod sysctls", func(t *testing.T) {
		for _, want := range []string{"shm_rmid_forced 1", "msg_max 100"} {
			if !strings.Contains(logs, want) {
				t.Errorf("container output %q, want %q: the pod's sysctls set in its IPC namespace", logs, want)
			}
		}
	})

	t.Run("stats", func(t *testing.T) {
		r := e.crictl(crictl, "stats", "-o", "json", app)
		out := r.stdout
		var st struct {
			Stats []struct {
				CPU struct {
					UsageCoreNanoSeconds struct{ Value string } `json:"usageCoreNanoSeconds"`
				} `json:"cpu"`
				Memory struct {
					WorkingSetBytes struct{ Value string } `json:"workingSetBytes"`
				} `json:"memory"`
			} `json:"stats"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Stats) != 1 {
			t.Fatalf("crictl stats -o json %s = exit %d, %q (%v), stderr %q; want one container's stats", app, r.code, out, err, r.stderr)
		}
		mem, _ := strconv.ParseUint(st.Stats[0].Memory.WorkingSetBytes.Value, 10, 64)
		cpu, _ := strconv.ParseUint(st.Stats[0].CPU.UsageCoreNanoSeconds.Value, 10, 64)
		// The container filled 8 MiB of its tmpfs, which its cgroup is charged for.
		if mem < 8<<20 || mem > 64<<20 || cpu == 0 {
			t.Errorf("crictl stats %s: working set %d bytes, CPU %d ns; want 8 MiB to the 64 MiB limit, and CPU time", app, mem, cpu)
		}
		t.Logf("crictl stats: working set %d bytes, CPU %d ns", mem, cpu)
	})

	t.Run("shared /dev/shm", func(t *testing.T) {
		r := e.crictl(crictl, "create", pod, containerConfig(t, "peer", image, "sleep", "1000"), podCfg)
		peer := strings.TrimSpace(r.stdout)
		if r.code != 0 || e.crictl(crictl, "start", peer).code != 0 {
			t.Fatalf("crictl create and start of a second container: exit %d, stderr %q", r.code, r.stderr)
		}
		if r := e.crictl(crictl, "exec", "-s", peer, "cat", "/dev/shm/app"); strings.TrimSpace(r.stdout) != "from app" {
			t.Errorf("/dev/shm/app, written by app, read in peer = exit %d, %q, stderr %q; want %q: the pod's containers share /dev/shm", r.code, r.stdout, r.stderr, "from app")
		}
		if got := exec(t, peer, "sh", "-c", "grep ' /dev/shm ' /proc/mounts"); !strings.Contains(got, "tmpfs") {
			t.Errorf("/dev/shm in peer: %q, want a tmpfs", got)
		}
	})

	t.Run("update", func(t *testing.T) {
		if got := exec(t, app, "cat", "/sys/fs/cgroup/memory.max"); got != strconv.Itoa(64<<20) {
			t.Fatalf("memory.max in the guest before crictl update = %q, want %d", got, 64<<20)
		}
		if r := e.crictl(crictl, "update", "--memory", strconv.Itoa(128<<20), "--cpu-quota", "50000", "--cpu-period", "100000", app); r.code != 0 {
			t.Fatalf("crictl update --memory %d --cpu-quota 50000: exit %d, stderr %q", 128<<20, r.code, r.stderr)
		}
		if got := exec(t, app, "cat", "/sys/fs/cgroup/memory.max"); got != strconv.Itoa(128<<20) {
			t.Errorf("memory.max in the guest after crictl update --memory %d = %q", 128<<20, got)
		}
		if got := exec(t, app, "cat", "/sys/fs/cgroup/cpu.max"); got != "50000 100000" {
			t.Errorf("cpu.max in the guest after crictl update --cpu-quota 50000 = %q, want %q", got, "50000 100000")
		}
	})
	e.removePod(crictl, pod)

	// An update the pod's policy does not allow: its entry lists no update_resources.
	cfg := podConfig(t, "fixed", map[string]string{"confguest.io/policy": podPolicy(t, root, []policy.Exec{
		{Args: []policy.Match{anything, anything}, Env: []policy.Match{anything}},
	})})
	pod = e.mustCrictl(crictl, "runp", "--runtime", "confguest", cfg)
	c := e.mustCrictl(crictl, "create", pod, containerConfig(t, "app", image, "sh", "-c", "echo admitted; exec sleep 1000"), cfg)
	e.mustCrictl(crictl, "start", c)
	e.waitLogs(crictl, c, "admitted")
	r := e.crictl(crictl, "update", "--memory", strconv.Itoa(128<<20), c)
	if r.code == 0 || !strings.Contains(r.stderr, "containers[app].update_resources: memory") {
		t.Errorf("crictl update --memory under a policy without update_resources = exit %d, stderr %q; want a denial naming containers[app].update_resources", r.code, r.stderr)
	}
	if got := e.mustCrictl(crictl, "exec", "-s", c, "cat", "/sys/fs/cgroup/memory.max"); got != "max" {
		t.Errorf("memory.max after the refused update = %q, want max", got)
	}
	e.removePod(crictl, pod)
}
