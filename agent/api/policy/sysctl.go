package policy

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ipcSysctls are the System V IPC sysctls the kernel keeps per IPC
// namespace (ipc/ipc_sysctl.c); fs.mqueue.* is per IPC namespace too.
var ipcSysctls = []string{
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
}

// NamespacedSysctl says which namespace holds sysctl key (dotted, as the
// OCI spec's linux.sysctl names it): the IPC namespace for System V IPC
// and POSIX message queues, the network namespace for net.*, the UTS
// namespace for kernel.hostname and kernel.domainname. Any other sysctl
// belongs to the whole kernel, and ok is false: runc refuses those too.
func NamespacedSysctl(key string) (ns specs.LinuxNamespaceType, ok bool) {
	switch {
	case slices.Contains(ipcSysctls, key), strings.HasPrefix(key, "fs.mqueue.") && len(key) > len("fs.mqueue."):
		return specs.IPCNamespace, true
	case strings.HasPrefix(key, "net.") && len(key) > len("net."):
		return specs.NetworkNamespace, true
	case key == "kernel.hostname", key == "kernel.domainname":
		return specs.UTSNamespace, true
	}
	return "", false
}

// UpdateResourceGroups are the values of a container's update_resources:
// the groups of cgroup limits of UpdateContainer, by the name of their
// request field.
var UpdateResourceGroups = []string{"memory", "cpu", "pids"}

func checkUpdateResources(groups []string) error {
	for i, g := range groups {
		if !slices.Contains(UpdateResourceGroups, g) {
			return fmt.Errorf("update_resources[%d] %q: want any of %q", i, g, UpdateResourceGroups)
		}
		if slices.Index(groups, g) != i {
			return fmt.Errorf("update_resources[%d] %q: listed twice", i, g)
		}
	}
	return nil
}
