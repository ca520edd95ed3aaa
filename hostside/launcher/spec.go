package launcher

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Process is what to run in a container.
type Process struct {
	Args []string
	Env  []string // KEY=VALUE
	Cwd  string
	TTY  bool
	// Stdin opens a stdin pipe (or TTY input) that the launcher feeds.
	Stdin         bool
	Width, Height uint32 // initial TTY size
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ProcessFromImage merges the command line and --env values with an image's run config,
// as docker run does: args replace the image's Cmd (the Entrypoint stays), env entries
// override the image's by key, and the working directory comes from the image.
func ProcessFromImage(cfg v1.Config, args, env []string) (Process, error) {
	p := Process{Cwd: cfg.WorkingDir}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	cmd := cfg.Cmd
	if len(args) > 0 {
		cmd = args
	}
	p.Args = append(append([]string(nil), cfg.Entrypoint...), cmd...)
	if len(p.Args) == 0 {
		return p, fmt.Errorf("no command given and the image has neither Entrypoint nor Cmd: add -- CMD [ARG...]")
	}
	p.Env = mergeEnv(append([]string{defaultPath}, cfg.Env...), env)
	for _, e := range env {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			return p, fmt.Errorf("--env %q: want KEY=VALUE", e)
		}
	}
	return p, nil
}

// mergeEnv overrides base by key with extra, keeping the first position of each key.
func mergeEnv(base, extra []string) []string {
	var out []string
	idx := map[string]int{}
	for _, e := range append(append([]string(nil), base...), extra...) {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := idx[k]; ok {
			out[i] = e
			continue
		}
		idx[k] = len(out)
		out = append(out, e)
	}
	return out
}

var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// processSpec is the OCI Process for p.
func processSpec(p Process) *specs.Process {
	sp := &specs.Process{
		Terminal: p.TTY,
		Args:     p.Args,
		Env:      p.Env,
		Cwd:      p.Cwd,
		User:     specs.User{UID: 0, GID: 0},
		Capabilities: &specs.LinuxCapabilities{
			Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
		},
		Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		NoNewPrivileges: true,
	}
	if sp.Cwd == "" {
		sp.Cwd = "/"
	}
	if p.TTY && p.Width > 0 && p.Height > 0 {
		sp.ConsoleSize = &specs.Box{Width: uint(p.Width), Height: uint(p.Height)}
	}
	return sp
}

// ContainerSpec is the OCI runtime spec of a container running p, with the usual mounts and
// namespaces of `runc spec` (the agent supplies the rootfs, so root.path is a placeholder).
func ContainerSpec(p Process, hostname string) *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Process:  processSpec(p),
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: hostname,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}
