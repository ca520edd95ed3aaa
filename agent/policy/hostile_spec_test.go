package policy

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1/wire"
)

// hostilePolicy is the policy the hostile-host suite attacks: one entry,
// "h", pinning what a careful operator pins (capability sets, seccomp,
// no_new_privileges, rlimits, umask, hostname, ...), and one exec command.
const hostilePolicy = `{
  "version": 1,
  "agent": {"stats": false, "shutdown": false, "replace_policy": false},
  "containers": [{
    "name": "h",
    "rootfs": {"layers": ["2222222222222222222222222222222222222222222222222222222222222222"]},
    "args": ["/bin/server"],
    "env": ["PATH=/bin"],
    "cwd": "/",
    "user": {"uid": 1000, "gid": 1000, "umask": 63},
    "capabilities": {"bounding": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"], "effective": ["CAP_NET_BIND_SERVICE"], "permitted": ["CAP_NET_BIND_SERVICE"]},
    "mounts": [
      {"destination": "/proc", "type": "proc", "source": "proc"},
      {"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
    ],
    "sysctls": {"net.ipv4.ping_group_range": "0 0"},
    "seccomp": "sha256:` + hostileSeccompHash + `",
    "no_new_privileges": true,
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "hostname": "server",
    "stdout": true,
    "exec": [{"args": ["/bin/status"]}]
  }]
}`

// hostileSeccompHash is policy.SeccompHash of hostileSeccomp(), in hex.
const hostileSeccompHash = "d5a36a8a7bc2cbddfb016d62272fddb7655cd3f33614ed389cdee841d98c5313"

const hostileLayer = "2222222222222222222222222222222222222222222222222222222222222222"

// hostileSeccomp is the profile the entry pins: deny by default, allow a
// few calls.
func hostileSeccomp() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write", "exit_group", "futex", "epoll_pwait"}, Action: specs.ActAllow},
		},
	}
}

// hostileSpec is the spec entry h admits; mod turns it into an attack.
func hostileSpec(mod func(*specs.Spec)) *specs.Spec {
	umask := uint32(0o77)
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: []string{"/bin/server"}, Env: []string{"PATH=/bin"}, Cwd: "/",
			User: specs.User{UID: 1000, GID: 1000, Umask: &umask},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  []string{"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"},
				Effective: []string{"CAP_NET_BIND_SERVICE"}, Permitted: []string{"CAP_NET_BIND_SERVICE"},
			},
			NoNewPrivileges: true,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "server",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			Sysctl:  map[string]string{"net.ipv4.ping_group_range": "0 0"},
			Seccomp: hostileSeccomp(),
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				Memory:  &specs.LinuxMemory{Limit: ptr(int64(256 << 20))},
				Pids:    &specs.LinuxPids{Limit: ptr(int64(100))},
			},
		},
	}
	if mod != nil {
		mod(s)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func hostileCreate(id string, mod func(*specs.Spec), block func(*agentv1.BlockRootfs)) *agentv1.CreateContainerRequest {
	b, err := json.Marshal(hostileSpec(mod))
	if err != nil {
		panic(err)
	}
	br := &agentv1.BlockRootfs{Serial: "c0", Verity: &agentv1.Verity{RootHash: hostileLayer, Salt: "00ff", DataBlocks: 4, HashOffset: 4 * 4096}}
	if block != nil {
		block(br)
	}
	return &agentv1.CreateContainerRequest{ContainerId: id, SpecJson: b, Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: br}}}
}

// hostileExec is the exec entry h allows; mod turns it into an attack.
func hostileExec(mod func(*specs.Process)) *agentv1.ExecProcessRequest {
	umask := uint32(0o77)
	p := &specs.Process{Args: []string{"/bin/status"}, Env: []string{"PATH=/bin"}, Cwd: "/",
		User: specs.User{UID: 1000, GID: 1000, Umask: &umask}, NoNewPrivileges: true}
	if mod != nil {
		mod(p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return &agentv1.ExecProcessRequest{ContainerId: "live", ExecId: "x", ProcessJson: b}
}

// TestHostileSpec plays a host that controls every byte of CreateContainer
// and ExecProcess against an entry that pins what it can: each attack must
// be refused with a denial naming the policy rule (and the field) that
// refuses it. point is the item of issue 14's "What the host can do today"
// the attack belongs to (0: a category of Kata's genpolicy tests).
func TestHostileSpec(t *testing.T) {
	setNoCaps := func(s *specs.Spec) { s.Process.Capabilities = nil }
	tests := []struct {
		name     string
		point    int
		create   *agentv1.CreateContainerRequest
		exec     *agentv1.ExecProcessRequest
		wantRule string // "denied by policy rule <wantRule>"
	}{
		// 2: capabilities by omission, and moved between sets.
		{"no process.capabilities under pinned sets", 2, hostileCreate("a", setNoCaps, nil), nil, "containers[h].capabilities.bounding: spec.process.capabilities.bounding"},
		{"bounding-only capability made effective", 2, hostileCreate("a", func(s *specs.Spec) {
			s.Process.Capabilities.Effective = append(s.Process.Capabilities.Effective, "CAP_NET_RAW")
		}, nil), nil, "containers[h].capabilities.effective: spec.process.capabilities.effective"},
		{"bounding-only capability made ambient", 2, hostileCreate("a", func(s *specs.Spec) {
			s.Process.Capabilities.Ambient = []string{"CAP_NET_RAW"}
		}, nil), nil, "containers[h].capabilities.ambient"},
		{"bounding-only capability made inheritable", 2, hostileCreate("a", func(s *specs.Spec) {
			s.Process.Capabilities.Inheritable = []string{"CAP_NET_RAW"}
		}, nil), nil, "containers[h].capabilities.inheritable"},
		{"bounding-only capability made permitted", 2, hostileCreate("a", func(s *specs.Spec) {
			s.Process.Capabilities.Permitted = append(s.Process.Capabilities.Permitted, "CAP_NET_RAW")
		}, nil), nil, "containers[h].capabilities.permitted"},
		{"exec with a bounding-only capability effective", 2, nil, hostileExec(func(p *specs.Process) {
			p.Capabilities = &specs.LinuxCapabilities{Effective: []string{"CAP_NET_RAW"}, Permitted: []string{"CAP_NET_RAW"}}
		}), "containers[h].exec.capabilities.effective"},

		// 4: seccomp, masked and read-only paths, ID mappings, no_new_privileges, process fields.
		{"allow-all seccomp profile", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
		}, nil), nil, "containers[h].seccomp: spec.linux.seccomp"},
		{"seccomp turning setuid into a silent no-op", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.Seccomp.Syscalls = append(s.Linux.Seccomp.Syscalls, specs.LinuxSyscall{Names: []string{"setuid", "setgid"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(0))})
		}, nil), nil, "containers[h].seccomp: spec.linux.seccomp"},
		{"/proc/kcore unmasked", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.MaskedPaths = s.Linux.MaskedPaths[:2]
		}, nil), nil, "containers[h].masked_paths: spec.linux.maskedPaths"},
		{"/proc/sys writable", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.ReadonlyPaths = s.Linux.ReadonlyPaths[:3]
		}, nil), nil, "containers[h].readonly_paths: spec.linux.readonlyPaths"},
		{"user namespace with host-chosen mappings", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}}
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}}
		}, nil), nil, "containers[h].uid_mappings: spec.linux.namespaces[6].type"},
		{"idmapped mount", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Mounts[1].UIDMappings = []specs.LinuxIDMapping{{ContainerID: 1000, HostID: 0, Size: 1}}
			s.Mounts[1].GIDMappings = []specs.LinuxIDMapping{{ContainerID: 1000, HostID: 0, Size: 1}}
		}, nil), nil, "containers[h].mounts: spec.mounts[1]"},
		{"no_new_privileges off", 4, hostileCreate("a", func(s *specs.Spec) { s.Process.NoNewPrivileges = false }, nil), nil,
			"containers[h].no_new_privileges: spec.process.noNewPrivileges"},
		{"exec turning no_new_privileges off", 4, nil, hostileExec(func(p *specs.Process) { p.NoNewPrivileges = false }),
			"containers[h].exec.no_new_privileges: process_json.noNewPrivileges"},
		{"RLIMIT_NOFILE raised", 4, hostileCreate("a", func(s *specs.Spec) { s.Process.Rlimits[0].Hard = 1 << 20 }, nil), nil,
			"containers[h].rlimits: spec.process.rlimits"},
		{"exec with its own rlimits", 4, nil, hostileExec(func(p *specs.Process) {
			p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Hard: 1 << 30, Soft: 1 << 30}}
		}), "containers[h].exec.rlimits: process_json.rlimits"},
		{"umask 0", 4, hostileCreate("a", func(s *specs.Spec) { s.Process.User.Umask = ptr(uint32(0)) }, nil), nil,
			"containers[h].user.umask: spec.process.user.umask"},
		{"OOM score -1000 (the guest's other processes die first)", 4, hostileCreate("a", func(s *specs.Spec) { s.Process.OOMScoreAdj = ptr(-1000) }, nil), nil,
			"containers[h].oom_score_adj: spec.process.oomScoreAdj"},
		{"another hostname", 4, hostileCreate("a", func(s *specs.Spec) { s.Hostname = "bank.example" }, nil), nil,
			"containers[h].hostname: spec.hostname"},
		{"32-bit personality", 4, hostileCreate("a", func(s *specs.Spec) { s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux32} }, nil), nil,
			"containers[h]: spec.linux.personality: refused"},
		{"time namespace offsets", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: -86400}}
		}, nil), nil, "containers[h]: spec.linux.timeOffsets: refused"},
		{"time namespace", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
		}, nil), nil, "containers[h]: spec.linux.namespaces[6].type"},
		{"realtime scheduler", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedFIFO, Priority: 99}
		}, nil), nil, "containers[h]: spec.process.scheduler: refused"},
		{"I/O priority", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Process.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_RT}
		}, nil), nil, "containers[h]: spec.process.ioPriority: refused"},
		{"AppArmor profile", 4, hostileCreate("a", func(s *specs.Spec) { s.Process.ApparmorProfile = "unconfined" }, nil), nil,
			"containers[h]: spec.process.apparmorProfile: refused"},
		{"guest network device moved in", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth0": {Name: "eth0"}}
		}, nil), nil, "containers[h]: spec.linux.netDevices: refused"},
		{"annotations read as runc settings", 4, hostileCreate("a", func(s *specs.Spec) {
			s.Annotations = map[string]string{"org.systemd.property.Delegate": "true"}
		}, nil), nil, "containers[h]: spec.annotations: refused"},
		{"exec with an SELinux label", 4, nil, hostileExec(func(p *specs.Process) { p.SelinuxLabel = "system_u:system_r:spc_t:s0" }),
			"containers[h].exec: process_json.selinuxLabel: refused"},

		// 5: cgroup files by name.
		{"cgroup.procs pulls the agent in", 5, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.Resources.Unified = map[string]string{"cgroup.procs": "1"}
		}, nil), nil, "containers[h]: spec.linux.resources.unified: refused"},
		{"cgroup.freeze by name", 5, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.Resources.Unified = map[string]string{"cgroup.freeze": "1"}
		}, nil), nil, "containers[h]: spec.linux.resources.unified: refused"},
		{"unified memory.max", 5, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.Resources.Unified = map[string]string{"memory.max": "max"}
		}, nil), nil, "containers[h]: spec.linux.resources.unified: refused"},
		{"block I/O rules naming devices", 5, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.Resources.BlockIO = &specs.LinuxBlockIO{Weight: ptr(uint16(1000))}
		}, nil), nil, "containers[h]: spec.linux.resources.blockIO: refused"},

		// 7: layer verity parameters.
		{"layer mounted as ext4", 7, hostileCreate("a", nil, func(b *agentv1.BlockRootfs) { b.FsType = "ext4" }), nil, "rootfs.layers: rootfs.block.fs_type"},
		{"layer hashed with sha1", 7, hostileCreate("a", nil, func(b *agentv1.BlockRootfs) { b.Verity.HashAlgorithm = "sha1" }), nil, "rootfs.layers: rootfs.block.verity.hash_algorithm"},
		{"layer with 512-byte blocks", 7, hostileCreate("a", nil, func(b *agentv1.BlockRootfs) { b.Verity.DataBlockSize = 512 }), nil, "rootfs.layers: rootfs.block.verity.data_block_size"},
		{"layer tree at a host-chosen offset", 7, hostileCreate("a", nil, func(b *agentv1.BlockRootfs) { b.Verity.HashOffset = 4096 }), nil, "rootfs.layers: rootfs.block.verity.hash_offset"},

		// Kata genpolicy's categories: sysctls, env, user/groups, mounts and volumes, exec, capabilities, namespaces.
		{"sysctl not in the policy", 0, hostileCreate("a", func(s *specs.Spec) { s.Linux.Sysctl["kernel.shm_rmid_forced"] = "0" }, nil), nil, "containers[h].sysctls"},
		{"sysctl of the whole guest", 0, hostileCreate("a", func(s *specs.Spec) { s.Linux.Sysctl["kernel.core_pattern"] = "|/data/x" }, nil), nil, "containers[h].sysctls"},
		{"sysctl with another value", 0, hostileCreate("a", func(s *specs.Spec) { s.Linux.Sysctl["net.ipv4.ping_group_range"] = "0 2147483647" }, nil), nil, "containers[h].sysctls"},
		{"LD_PRELOAD in env", 0, hostileCreate("a", func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "LD_PRELOAD=/data/x.so") }, nil), nil, "containers[h].env: spec.process.env[1]"},
		{"root user", 0, hostileCreate("a", func(s *specs.Spec) { s.Process.User.UID, s.Process.User.GID = 0, 0 }, nil), nil, "containers[h].user: spec.process.user"},
		{"extra group 0", 0, hostileCreate("a", func(s *specs.Spec) { s.Process.User.AdditionalGids = []uint32{0} }, nil), nil, "containers[h].user: spec.process.user"},
		{"bind mount of the guest root", 0, hostileCreate("a", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/host", Type: "bind", Source: "/", Options: []string{"rbind"}})
		}, nil), nil, "containers[h].mounts: spec.mounts[2]"},
		{"volume without nodev", 0, hostileCreate("a", func(s *specs.Spec) { s.Mounts[1].Options = []string{"nosuid"} }, nil), nil, "containers[h].mounts: spec.mounts[1]"},
		{"shared root propagation", 0, hostileCreate("a", func(s *specs.Spec) { s.Linux.RootfsPropagation = "rshared" }, nil), nil, "containers[h]: spec.linux.rootfsPropagation"},
		{"exec of another command", 0, nil, hostileExec(func(p *specs.Process) { p.Args = []string{"/bin/sh", "-c", "cat /data/key"} }), "containers[h].exec: process_json.args"},
		{"exec with a terminal", 0, nil, hostileExec(func(p *specs.Process) { p.Terminal = true }), "containers[h].exec.tty"},
		{"exec as root", 0, nil, hostileExec(func(p *specs.Process) { p.User.UID = 0 }), "containers[h].exec.user"},
		{"CAP_SYS_ADMIN in every set", 0, hostileCreate("a", func(s *specs.Spec) {
			c := s.Process.Capabilities
			c.Bounding, c.Effective, c.Permitted = append(c.Bounding, "CAP_SYS_ADMIN"), append(c.Effective, "CAP_SYS_ADMIN"), append(c.Permitted, "CAP_SYS_ADMIN")
		}, nil), nil, "containers[h].capabilities.bounding"},
		{"guest pid namespace", 0, hostileCreate("a", func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[1:] }, nil), nil, "containers[h]: spec.linux.namespaces: no pid namespace"},
		{"joining the guest's network namespace", 0, hostileCreate("a", func(s *specs.Spec) { s.Linux.Namespaces[1].Path = "/proc/1/ns/net" }, nil), nil, "containers[h]: spec.linux.namespaces[1].path"},
		{"device node /dev/mem", 0, hostileCreate("a", func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/mem", Type: "c", Major: 1, Minor: 1}}
		}, nil), nil, "containers[h]: spec.linux.devices: refused"},
		{"OCI hook", 0, hostileCreate("a", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh"}}}
		}, nil), nil, "containers[h]: spec.hooks: refused"},
	}
	p, err := Parse([]byte(hostilePolicy))
	if err != nil {
		t.Fatalf("Parse(hostilePolicy) = %v", err)
	}
	e := NewEvaluator(p)
	ctx := context.Background()
	// The entry admits the unmodified spec and exec: each attack below is
	// refused for what it changes.
	if err := authorize(ctx, e, MethodCreateContainer, hostileCreate("live", nil, nil)); err != nil {
		t.Fatalf("Authorize(the spec the entry pins) = %v, want allowed", err)
	}
	if err := authorize(ctx, e, MethodExecProcess, hostileExec(nil)); err != nil {
		t.Fatalf("Authorize(the exec the entry allows) = %v, want allowed", err)
	}
	points := map[int]int{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, req := MethodCreateContainer, any(tc.create)
			if tc.exec != nil {
				method, req = MethodExecProcess, tc.exec
			}
			err := authorize(ctx, e, method, req)
			if err == nil || !strings.Contains(err.Error(), "denied by policy rule "+tc.wantRule) {
				t.Errorf("point %d: Authorize(%s) = %v, want a denial by policy rule %s", tc.point, tc.name, err, tc.wantRule)
			}
		})
		points[tc.point]++
	}
	if len(tests) < 25 || points[2] < 3 || points[4] < 10 || points[5] < 2 || points[7] < 3 {
		t.Errorf("the suite has %d attacks (%v by point), want at least 25 covering points 2, 4, 5 and 7", len(tests), points)
	}
}
