package shim

import (
	"cmp"
	"fmt"
	"math"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/hostside/launcher"
	"confguest/hostside/vmm"
)

// The sandbox annotations containerd's CRI sets from the pod's resources (the kubelet
// sends their sums over the pod's containers, without the pod overhead, in
// PodSandboxConfig.linux.resources): memory limit in bytes, CPU quota and period in µs.
const (
	annotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
	annotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	annotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
)

// Default bounds of a pod VM's size (Config.MaxCPUs, Config.MaxMemoryMiB).
const (
	DefaultMaxCPUs      = 4
	DefaultMaxMemoryMiB = 8192
)

// podLimits are what a pod asks for: the sum of its containers' memory limits in bytes
// and of their CPU limits in CPUs, each 0 when none is limited.
type podLimits struct {
	memoryBytes int64
	cpus        float64
}

// limitsOf reads the pod's limits from the spec that boots its VM: for a CRI sandbox the
// annotations containerd derives from the pod's resources, for a container of its own
// (ctr run) its own linux.resources. A malformed annotation is an error naming it.
func limitsOf(spec *specs.Spec, sandbox bool) (podLimits, error) {
	var l podLimits
	if !sandbox {
		if spec.Linux == nil || spec.Linux.Resources == nil {
			return l, nil
		}
		r := spec.Linux.Resources
		if m := r.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
			l.memoryBytes = *m.Limit
		}
		if c := r.CPU; c != nil && c.Quota != nil && c.Period != nil && *c.Quota > 0 && *c.Period > 0 {
			l.cpus = float64(*c.Quota) / float64(*c.Period)
		}
		return l, nil
	}
	num := func(key string) (int64, error) {
		v, ok := spec.Annotations[key]
		if !ok || v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("sandbox annotation %s=%q: not a number: %w", key, v, errInvalid)
		}
		return max(n, 0), nil
	}
	mem, err := num(annotationSandboxMemory)
	if err != nil {
		return l, err
	}
	quota, err := num(annotationSandboxCPUQuota)
	if err != nil {
		return l, err
	}
	period, err := num(annotationSandboxCPUPeriod)
	if err != nil {
		return l, err
	}
	l.memoryBytes = mem
	if quota > 0 && period > 0 {
		l.cpus = float64(quota) / float64(period)
	}
	return l, nil
}

// podSize is the vCPUs and memory of the VM of a pod that asks for l, and a line saying
// how they were chosen. The rule (deploy/README.md): the configured size (cpus,
// memory_mib) is the guest's own share — kernel, agent, the containers' writable layers
// in memory — and the pod's limits are added on top: vCPUs = cpus + ceil(CPU limits),
// memory = memory_mib + ceil(memory limits / 1 MiB), each at most max_cpus and
// max_memory_mib. A pod without limits gets the configured size, as before. An SEV-SNP
// guest under Cloud Hypervisor keeps the size guest.igvm is built for (its vCPUs and
// every page of its memory are measured).
func (c Config) podSize(l podLimits) (cpus, memMiB int, how string) {
	base, baseMem := cmp.Or(c.CPUs, vmm.DefaultCPUs), cmp.Or(c.MemoryMiB, vmm.DefaultMemoryMiB)
	switch {
	case l.memoryBytes == 0 && l.cpus == 0:
		return c.CPUs, c.MemoryMiB, fmt.Sprintf("pod VM: %d vCPU, %d MiB (the pod sets no limits)", base, baseMem)
	case c.SEVSNP && c.VMM == launcher.CloudHypervisor:
		return c.CPUs, c.MemoryMiB, fmt.Sprintf("pod VM: the size guest.igvm is built for: an SEV-SNP guest under %s is not sized from the pod's limits (%d bytes, %.3g CPUs)", launcher.CloudHypervisor, l.memoryBytes, l.cpus)
	}
	wantCPUs := base + ceilDiv(int64(math.Round(l.cpus*1000)), 1000)
	wantMem := baseMem + ceilDiv(l.memoryBytes, 1<<20)
	cpus, memMiB = min(wantCPUs, c.MaxCPUs), min(wantMem, c.MaxMemoryMiB)
	how = fmt.Sprintf("pod VM: %d vCPU, %d MiB (configured %d vCPU and %d MiB plus the pod's limits, %.3g CPUs and %d bytes", cpus, memMiB, base, baseMem, l.cpus, l.memoryBytes)
	if cpus < wantCPUs || memMiB < wantMem {
		how += fmt.Sprintf(", bounded by max_cpus %d and max_memory_mib %d", c.MaxCPUs, c.MaxMemoryMiB)
	}
	return cpus, memMiB, how + ")"
}

// ceilDiv is n/d rounded up, for n >= 0 and d > 0.
func ceilDiv(n, d int64) int {
	return int((n + d - 1) / d)
}
