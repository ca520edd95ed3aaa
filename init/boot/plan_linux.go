package boot

import (
	"log/slog"

	"golang.org/x/sys/unix"

	"confguest/init/cmdline"
)

// Paths and names the boot steps use.
const (
	// NewRoot is where the verity root is mounted before switching into it.
	NewRoot = "/newroot"
	// VerityName is the device-mapper name of the root; /dev/mapper/root.
	VerityName = "root"
	// Hostname is the guest's host name.
	Hostname = "confguest"
	// CgroupRoot is where the cgroup2 hierarchy is mounted.
	CgroupRoot = "/sys/fs/cgroup"
	// ConfigFS is where configfs is mounted: the agent asks for SEV-SNP
	// reports through configfs-tsm (ConfigFS/tsm/report, attest.OpenDevice).
	// The kernel creates the directory (CONFIG_CONFIGFS_FS).
	ConfigFS = "/sys/kernel/config"
	// StateDir is the agent's writable state directory (on the /run tmpfs).
	StateDir = "/run/confguest"
)

// Plan is the input of Steps.
type Plan struct {
	// CmdlinePath is read for the confguest.* parameters (/proc/cmdline).
	CmdlinePath string
	// Config receives the parsed parameters; later steps read it.
	Config *cmdline.Config
	// Level is set to confguest.loglevel once it is parsed.
	Level *slog.LevelVar
	// Printf writes console markers other components match exactly.
	Printf func(format string, args ...any)
}

const (
	nosuid = unix.MS_NOSUID
	nodev  = unix.MS_NODEV
	noexec = unix.MS_NOEXEC
)

// Steps is PID 1's boot, in order. After the last step the process runs in
// the verity root with /dev, /proc, /sys (with configfs and cgroup2 on it)
// and /run moved into it, writable tmpfs on /tmp and /var, and the
// initramfs contents freed.
func Steps(p Plan) []Step {
	return []Step{
		Mount{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: nosuid, Data: "mode=0755", Mkdir: 0o755},
		Console{Path: "/dev/console"},
		Mount{Source: "proc", Target: "/proc", FSType: "proc", Flags: nosuid | nodev | noexec, Mkdir: 0o555},
		Mount{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: nosuid | nodev | noexec, Mkdir: 0o555},
		Mount{Source: "configfs", Target: ConfigFS, FSType: "configfs", Flags: nosuid | nodev | noexec},
		Mount{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: nosuid | noexec, Data: "mode=0620,ptmxmode=0666", Mkdir: 0o755},
		Mount{Source: "shm", Target: "/dev/shm", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=1777", Mkdir: 0o1777},
		Mount{Source: "run", Target: "/run", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=0755", Mkdir: 0o755},
		Mount{Source: "cgroup2", Target: CgroupRoot, FSType: "cgroup2", Flags: nosuid | nodev | noexec},
		EnableControllers{Dir: CgroupRoot},
		SetHostname{Name: Hostname},
		ParseCmdline{Path: p.CmdlinePath, Into: p.Config, Level: p.Level},
		WaitDevice{Config: p.Config},
		CreateVerity{Config: p.Config, Name: VerityName},
		ReadAhead{Device: "/dev/mapper/" + VerityName, Config: p.Config},
		MountVerityRoot{Config: p.Config, Name: VerityName, Target: NewRoot, Printf: p.Printf},
		Mount{Source: "tmp", Target: NewRoot + "/tmp", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=1777"},
		Mount{Source: "var", Target: NewRoot + "/var", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=0755"},
		SwitchRoot{NewRoot: NewRoot, Move: []string{"/dev", "/proc", "/sys", "/run"}},
		Mkdir{Path: StateDir, Mode: 0o700},
	}
}
