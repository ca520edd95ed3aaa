package shim

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestPodSize: the configured size plus the pod's limits (memory rounded up to a MiB,
// CPUs up to a whole vCPU), bounded by max_cpus and max_memory_mib; a pod without limits,
// or an SEV-SNP guest under Cloud Hypervisor, keeps the configured size.
func TestPodSize(t *testing.T) {
	def := Config{MaxCPUs: DefaultMaxCPUs, MaxMemoryMiB: DefaultMaxMemoryMiB}
	for _, tc := range []struct {
		name             string
		cfg              Config
		l                podLimits
		wantCPUs, wantMB int
		wantHow          string
	}{
		{"no limits keeps the launcher's default", def, podLimits{}, 0, 0, "1 vCPU, 512 MiB (the pod sets no limits)"},
		{"no limits keeps the configured size", Config{CPUs: 2, MemoryMiB: 1024, MaxCPUs: 4, MaxMemoryMiB: 4096}, podLimits{}, 2, 1024, "2 vCPU, 1024 MiB"},
		{"256 MiB and half a CPU", def, podLimits{memoryBytes: 256 << 20, cpus: 0.5}, 2, 768, "plus the pod's limits, 0.5 CPUs and 268435456 bytes"},
		{"a byte over a MiB rounds up", def, podLimits{memoryBytes: 1<<20 + 1}, 1, 514, ""},
		{"exactly two CPUs", def, podLimits{cpus: 2}, 3, 512, ""},
		{"2.001 CPUs round up", def, podLimits{cpus: 2.001}, 4, 512, ""},
		{"on top of a configured size", Config{CPUs: 2, MemoryMiB: 1024, MaxCPUs: 8, MaxMemoryMiB: 8192}, podLimits{memoryBytes: 1 << 30, cpus: 1}, 3, 2048, ""},
		{"bounded", def, podLimits{memoryBytes: 64 << 30, cpus: 16}, 4, 8192, "bounded by max_cpus 4 and max_memory_mib 8192"},
		{"SEV-SNP under Cloud Hypervisor", Config{VMM: "cloud-hypervisor", SEVSNP: true, MaxCPUs: 4, MaxMemoryMiB: 8192}, podLimits{memoryBytes: 1 << 30, cpus: 1}, 0, 0, "guest.igvm is built for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cpus, mb, how := tc.cfg.podSize(tc.l)
			if cpus != tc.wantCPUs || mb != tc.wantMB || !strings.Contains(how, tc.wantHow) {
				t.Errorf("podSize(%+v) = %d, %d, %q, want %d, %d and a note containing %q", tc.l, cpus, mb, how, tc.wantCPUs, tc.wantMB, tc.wantHow)
			}
		})
	}
}

// TestLimitsOf: a CRI sandbox's limits come from containerd's sandbox annotations; a
// container of its own has its own linux.resources; a malformed annotation is refused
// naming it.
func TestLimitsOf(t *testing.T) {
	quota, period, mem := int64(150000), uint64(100000), int64(300<<20)
	for _, tc := range []struct {
		name    string
		spec    specs.Spec
		sandbox bool
		want    podLimits
		wantErr string
	}{
		{"sandbox annotations", specs.Spec{Annotations: map[string]string{
			annotationSandboxMemory: "314572800", annotationSandboxCPUQuota: "150000", annotationSandboxCPUPeriod: "100000",
			"io.kubernetes.cri.sandbox-cpu-shares": "1536",
		}}, true, podLimits{memoryBytes: 300 << 20, cpus: 1.5}, ""},
		{"sandbox without limits (containerd writes 0)", specs.Spec{Annotations: map[string]string{
			annotationSandboxMemory: "0", annotationSandboxCPUQuota: "0", annotationSandboxCPUPeriod: "100000",
		}}, true, podLimits{}, ""},
		{"sandbox with no annotations", specs.Spec{}, true, podLimits{}, ""},
		{"sandbox ignores its own linux.resources", specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem}}}}, true, podLimits{}, ""},
		{"malformed annotation", specs.Spec{Annotations: map[string]string{annotationSandboxMemory: "1Gi"}}, true, podLimits{}, annotationSandboxMemory + `="1Gi"`},
		{"negative quota means none", specs.Spec{Annotations: map[string]string{annotationSandboxCPUQuota: "-1", annotationSandboxCPUPeriod: "100000"}}, true, podLimits{}, ""},
		{"a container of its own", specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: &mem}, CPU: &specs.LinuxCPU{Quota: &quota, Period: &period},
		}}}, false, podLimits{memoryBytes: 300 << 20, cpus: 1.5}, ""},
		{"a container without resources", specs.Spec{Linux: &specs.Linux{}}, false, podLimits{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := limitsOf(&tc.spec, tc.sandbox)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("limitsOf(%s) = %v, %v, want an error naming %s", tc.name, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("limitsOf(%s) = %+v, %v, want %+v", tc.name, got, err, tc.want)
			}
		})
	}
}
