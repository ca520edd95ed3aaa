package kernelcfg

import (
	"bytes"
	"strings"
	"testing"

	"confguest/kernelcfg/kconfig"
)

// The options DESIGN.md and the image issue require of the guest kernel. Removing one from
// guest.config must be a deliberate change to this list too.
var required = map[string]string{
	"CONFIG_64BIT": "y", "CONFIG_SMP": "y", "CONFIG_MODULES": "n", "CONFIG_MODULE_SIG": "n",
	"CONFIG_VIRTIO_PCI": "y", "CONFIG_VIRTIO_MMIO": "y", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES": "y",
	"CONFIG_VIRTIO_BLK": "y", "CONFIG_VIRTIO_CONSOLE": "y", "CONFIG_SERIAL_8250_CONSOLE": "y",
	"CONFIG_VSOCKETS": "y", "CONFIG_VIRTIO_VSOCKETS": "y",
	"CONFIG_BLK_DEV_DM": "y", "CONFIG_DM_VERITY": "y", "CONFIG_CRYPTO_SHA256": "y",
	"CONFIG_EROFS_FS": "y", "CONFIG_OVERLAY_FS": "y", "CONFIG_TMPFS": "y", "CONFIG_TMPFS_XATTR": "y",
	"CONFIG_DEVTMPFS": "y", "CONFIG_UNIX98_PTYS": "y", "CONFIG_PROC_FS": "y", "CONFIG_SYSFS": "y",
	"CONFIG_CONFIGFS_FS": "y",
	"CONFIG_CGROUPS":     "y", "CONFIG_MEMCG": "y", "CONFIG_CGROUP_PIDS": "y", "CONFIG_CGROUP_SCHED": "y",
	"CONFIG_CFS_BANDWIDTH": "y", "CONFIG_BLK_CGROUP": "y", "CONFIG_CPUSETS": "y",
	"CONFIG_CGROUP_BPF": "y", "CONFIG_BPF_SYSCALL": "y",
	"CONFIG_NAMESPACES": "y", "CONFIG_UTS_NS": "y", "CONFIG_IPC_NS": "y", "CONFIG_USER_NS": "y",
	"CONFIG_PID_NS": "y", "CONFIG_NET_NS": "y", "CONFIG_TIME_NS": "y",
	"CONFIG_POSIX_MQUEUE": "y", "CONFIG_MULTIUSER": "y", "CONFIG_FUTEX": "y", "CONFIG_EPOLL": "y",
	"CONFIG_SIGNALFD": "y", "CONFIG_TIMERFD": "y", "CONFIG_EVENTFD": "y", "CONFIG_SHMEM": "y",
	"CONFIG_FILE_LOCKING": "y", "CONFIG_INOTIFY_USER": "y", "CONFIG_FHANDLE": "y",
	"CONFIG_BINFMT_ELF": "y", "CONFIG_BINFMT_SCRIPT": "y",
	"CONFIG_SECCOMP": "y", "CONFIG_SECCOMP_FILTER": "y",
	"CONFIG_NET": "y", "CONFIG_UNIX": "y", "CONFIG_INET": "y", "CONFIG_VETH": "y",
	"CONFIG_AMD_MEM_ENCRYPT": "y", "CONFIG_SEV_GUEST": "y", "CONFIG_TSM_REPORTS": "y",
	"CONFIG_EFI": "y", "CONFIG_EFI_STUB": "y",
	"CONFIG_ACPI": "y", "CONFIG_ACPI_BUTTON": "y", "CONFIG_INPUT_EVDEV": "y",
	"CONFIG_HOTPLUG_PCI_ACPI": "y", "CONFIG_HOTPLUG_PCI_PCIE": "y",
	"CONFIG_HW_RANDOM_VIRTIO": "y", "CONFIG_BLK_DEV_INITRD": "y", "CONFIG_RD_GZIP": "y",
}

func TestFragmentHasRequiredOptions(t *testing.T) {
	opts, err := kconfig.ParseFragment(bytes.NewReader(Fragment))
	if err != nil {
		t.Fatalf("ParseFragment(guest.config): %v", err)
	}
	got := map[string]string{}
	for _, o := range opts {
		got[o.Name] = o.Value
	}
	for name, want := range required {
		if got[name] != want {
			t.Errorf("guest.config %s = %q, want %q", name, got[name], want)
		}
	}
	for _, o := range opts {
		if o.Value == "m" {
			t.Errorf("guest.config line %d: %s=m, want y: the guest has no modules", o.Line, o.Name)
		}
	}
}

// Every group of options is introduced by one comment line saying why the guest needs it.
func TestFragmentGroupsAreExplained(t *testing.T) {
	groups := strings.Split(strings.TrimSpace(string(Fragment)), "\n\n")
	for i, g := range groups[1:] { // the first block is the file's header
		first, _, _ := strings.Cut(g, "\n")
		if !strings.HasPrefix(first, "# ") || strings.HasSuffix(first, " is not set") {
			t.Errorf("guest.config group %d starts with %q, want a comment saying why the guest needs it", i+1, first)
		}
	}
}
