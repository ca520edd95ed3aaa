package shim

import (
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	agentv1 "confguest/agent/api/v1"
)

func ref[T any](v T) *T { return &v }

// TestUpdateRequest: containerd's LinuxResources become the agent's request with memory,
// CPU and pids only (device rules, hugepages and unified files dropped as at create);
// settings the agent cannot change are refused naming them.
func TestUpdateRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		res     specs.LinuxResources
		want    *agentv1.UpdateContainerRequest
		wantErr string
	}{
		{
			"what crictl update --memory sends",
			specs.LinuxResources{
				Devices:        []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Major: ref(int64(1)), Minor: ref(int64(3)), Access: "rwm"}},
				Memory:         &specs.LinuxMemory{Limit: ref(int64(64 << 20)), Swap: ref(int64(64 << 20))},
				CPU:            &specs.LinuxCPU{Shares: ref(uint64(2)), Period: ref(uint64(100000))},
				HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 0}},
				Unified:        map[string]string{"memory.high": "1"},
			},
			&agentv1.UpdateContainerRequest{ContainerId: "c", Memory: &agentv1.MemoryResources{Limit: 64 << 20, Swap: 64 << 20}, Cpu: &agentv1.CPUResources{Shares: 2, Period: 100000}},
			"",
		},
		{
			"cpuset and pids",
			specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ref(int64(-1)), Cpus: "0-1", Mems: "0"}, Pids: &specs.LinuxPids{Limit: ref(int64(100))}},
			&agentv1.UpdateContainerRequest{ContainerId: "c", Cpu: &agentv1.CPUResources{Quota: -1, Cpus: "0-1", Mems: "0"}, Pids: &agentv1.PidsResources{Limit: 100}},
			"",
		},
		{"nothing", specs.LinuxResources{}, &agentv1.UpdateContainerRequest{ContainerId: "c"}, ""},
		{"swappiness", specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: ref(uint64(0))}}, nil, "linux.resources.memory.swappiness"},
		{"kernel memory", specs.LinuxResources{Memory: &specs.LinuxMemory{Kernel: ref(int64(1))}}, nil, "linux.resources.memory.kernel"},
		{"realtime", specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: ref(int64(1))}}, nil, "linux.resources.cpu.realtimeRuntime"},
		{"burst", specs.LinuxResources{CPU: &specs.LinuxCPU{Burst: ref(uint64(1))}}, nil, "linux.resources.cpu.burst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := updateRequest("c", &tc.res)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("updateRequest(%+v) = %v, %v, want an invalid-argument error naming %s", tc.res, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !proto.Equal(got, tc.want) {
				t.Fatalf("updateRequest(%+v) = %v, %v, want %v", tc.res, got, err, tc.want)
			}
		})
	}
}

// TestPodSysctls: a pod's sysctls reach the containers that join the namespace holding
// each (not the containers' own ones); a pod with a sysctl of the whole kernel is refused
// naming it.
func TestPodSysctls(t *testing.T) {
	sandbox := func(sysctls map[string]string) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Sysctl: sysctls}}
	}
	pod := map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_unprivileged_port_start": "0", "fs.mqueue.msg_max": "100"}
	got, err := podSysctls("p", sandbox(pod))
	if err != nil || len(got) != 3 {
		t.Fatalf("podSysctls(%v) = %v, %v, want them all", pod, got, err)
	}
	for _, bad := range []string{"kernel.panic", "vm.swappiness", "fs.file-max"} {
		_, err := podSysctls("p", sandbox(map[string]string{"kernel.sem": "1 1 1 1", bad: "1"}))
		if err == nil || !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), "sysctl "+bad+": ") {
			t.Errorf("podSysctls(%s) = %v, want an invalid-argument error naming it", bad, err)
		}
	}
	for _, tc := range []struct {
		name  string
		own   map[string]string
		podNS []specs.LinuxNamespaceType
		want  map[string]string
	}{
		{"ipc and network", nil, []specs.LinuxNamespaceType{specs.IPCNamespace, specs.NetworkNamespace}, pod},
		{"ipc only", nil, []specs.LinuxNamespaceType{specs.IPCNamespace}, map[string]string{"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100"}},
		{"none", nil, nil, map[string]string{}},
		{"the container's own value stays", map[string]string{"fs.mqueue.msg_max": "10"}, []specs.LinuxNamespaceType{specs.IPCNamespace}, map[string]string{"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &specs.Spec{Linux: &specs.Linux{Sysctl: tc.own}}
			withPodSysctls(g, pod, tc.podNS)
			if len(g.Linux.Sysctl) != len(tc.want) {
				t.Fatalf("withPodSysctls(%v) = %v, want %v", tc.podNS, g.Linux.Sysctl, tc.want)
			}
			for k, v := range tc.want {
				if g.Linux.Sysctl[k] != v {
					t.Errorf("withPodSysctls(%v) = %v, want %v", tc.podNS, g.Linux.Sysctl, tc.want)
				}
			}
		})
	}
}
