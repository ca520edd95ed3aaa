package policy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	doc "confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/authz"
	"confguest/agent/request"
	"confguest/agent/ttrpcserver"
)

const webLayer = "1111111111111111111111111111111111111111111111111111111111111111"

// webSpec is a spec the web entry of testdata/web.json admits; mod
// changes it for a test case.
func webSpec(mod func(*specs.Spec)) []byte {
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: []string{"/bin/httpd", "-p8080"},
			Env:  []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello world"},
			Cwd:  "/srv",
			User: specs.User{UID: 1000, GID: 1000},
			Capabilities: &specs.LinuxCapabilities{
				Bounding: []string{"CAP_NET_BIND_SERVICE", "CAP_KILL"}, Effective: []string{"CAP_NET_BIND_SERVICE"},
				Permitted: []string{"CAP_NET_BIND_SERVICE"},
			},
			NoNewPrivileges: true,
		},
		Root: &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nodev", "nosuid", "mode=1777"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			Sysctl:        map[string]string{"net.ipv4.ping_group_range": "0 0"},
			Resources:     &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			MaskedPaths:   doc.DefaultMaskedPaths,
			ReadonlyPaths: doc.DefaultReadonlyPaths,
		},
	}
	if mod != nil {
		mod(s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return b
}

// authorize decides on req as the RPC edge does (authz.Check: decoded,
// then authorized) and records an allowed create or exec as the container
// manager does once it succeeded (Admit).
func authorize(ctx context.Context, a authz.Authorizer, method string, req any) error {
	d, err := authz.Check(ctx, a, method, req)
	if err != nil {
		return err
	}
	return request.Admit(d)
}

func createWeb(id string, mod func(*specs.Spec)) *agentv1.CreateContainerRequest {
	return &agentv1.CreateContainerRequest{
		ContainerId: id,
		SpecJson:    webSpec(mod),
		Rootfs:      &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{Serial: "c0", Verity: &agentv1.Verity{RootHash: webLayer, DataBlocks: 1, HashOffset: 4096}}}},
	}
}

func toolsSpec(mod func(*specs.Spec)) []byte {
	return webSpec(func(s *specs.Spec) {
		s.Process = &specs.Process{Args: []string{"/bin/sh"}, Env: []string{"TERM=xterm"}, Cwd: "/", Terminal: true}
		s.Mounts = s.Mounts[:1]
		s.Linux.Sysctl = nil
		if mod != nil {
			mod(s)
		}
	})
}

func createTools(id string) *agentv1.CreateContainerRequest {
	return &agentv1.CreateContainerRequest{
		ContainerId: id,
		SpecJson:    toolsSpec(nil),
		Rootfs:      &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: "/usr/share/confguest/busybox"}},
		Stdio:       &agentv1.StdioOptions{Stdin: true},
	}
}

func execReq(cid, eid string, p specs.Process, stdin bool) *agentv1.ExecProcessRequest {
	if p.Cwd == "" {
		p.Cwd = "/srv"
	}
	if p.User.UID == 0 {
		p.User = specs.User{UID: 1000, GID: 1000}
	}
	// The web entry pins no_new_privileges; an exec'd process must keep it.
	p.NoNewPrivileges = true
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return &agentv1.ExecProcessRequest{ContainerId: cid, ExecId: eid, ProcessJson: b, Stdio: &agentv1.StdioOptions{Stdin: stdin}}
}

func ref(cid, eid string) *agentv1.ProcessRef {
	return &agentv1.ProcessRef{ContainerId: cid, ExecId: eid}
}

// admitted returns a gate with testdata/web.json (optionally edited)
// installed unbound, container "w" admitted under web with exec "ls"
// (/bin/ls) and "sh" (/bin/sh), and container "t" admitted under tools.
func admitted(t *testing.T, edits ...string) *Gate {
	t.Helper()
	doc := readTestdata(t, "web.json")
	for i := 0; i+1 < len(edits); i += 2 {
		doc = edit(t, doc, edits[i], edits[i+1])
	}
	g := NewGate(nil, discardLogger())
	if err := g.Install(context.Background(), doc); err != nil {
		t.Fatalf("Install(web.json) = %v", err)
	}
	steps := []struct {
		method string
		req    any
	}{
		{MethodCreateContainer, createWeb("w", nil)},
		{MethodCreateContainer, createTools("t")},
		{MethodExecProcess, execReq("w", "ls", specs.Process{Args: []string{"/bin/ls", "/srv/www"}}, false)},
		{MethodExecProcess, execReq("w", "sh", specs.Process{Args: []string{"/bin/sh"}, Terminal: true}, true)},
	}
	for _, s := range steps {
		if err := authorize(context.Background(), g, s.method, s.req); err != nil {
			t.Fatalf("admitting %s %v = %v", s.method, s.req, err)
		}
	}
	return g
}

type rpcCase struct {
	name   string
	method string
	req    any
	gate   func(*testing.T) *Gate // nil: admitted(t)
	// wantRule is the rule a denial names ("" means allowed); it also
	// must not leak secret, a value from the request.
	wantRule string
}

const secret = "hunter2"

func rpcCases() []rpcCase {
	noPolicy := func(t *testing.T) *Gate { return NewGate(nil, discardLogger()) }
	replaceable := func(t *testing.T) *Gate {
		return admitted(t, `"replace_policy": false`, `"replace_policy": true`, `"shutdown": false`, `"shutdown": true`)
	}
	poisoned := func(t *testing.T) *Gate {
		g := NewGate(fixedHostData{}, discardLogger())
		if err := g.Install(context.Background(), []byte(`{"version":1}`)); !errors.Is(err, ErrNotBound) {
			t.Fatalf("Install(unbound policy) = %v, want ErrNotBound", err)
		}
		return g
	}
	noStats := func(t *testing.T) *Gate { return admitted(t, `"stats": true`, `"stats": false`) }
	reports := func(t *testing.T) *Gate { return admitted(t, `"stats": true`, `"stats": true, "get_report": true`) }
	volumes := func(t *testing.T) *Gate {
		return admitted(t, `"name": "web",`, `"name": "web", "volumes": [{"destination": "/etc/config", "kind": "files"}, {"destination": "/cache", "kind": "empty_dir"}, {"destination": "/dev/termination-log", "kind": "files", "read_back": true}],`)
	}
	podNetwork := func(t *testing.T) *Gate { return admitted(t, `"stats": true`, `"stats": true, "pod_network": true`) }
	network := &agentv1.ConfigureNetworkRequest{
		Interface: &agentv1.NetworkInterface{Mac: "02:42:0a:58:4d:05", Name: "eth0", Mtu: 1500, Addresses: []string{"10.88.77.5/24"}},
		Routes:    []*agentv1.NetworkRoute{{Gateway: "10.88.77.1"}},
	}
	update := func(id, dest string) *agentv1.UpdateVolumeRequest {
		return &agentv1.UpdateVolumeRequest{ContainerId: id, Destination: dest, Files: &agentv1.Files{Entries: []*agentv1.FileEntry{{Path: "k", Data: []byte(secret)}}}}
	}
	updatable := func(t *testing.T) *Gate {
		return admitted(t, `"name": "web",`, `"name": "web", "update_resources": ["memory", "cpu"],`)
	}
	memory := &agentv1.UpdateContainerRequest{ContainerId: "w", Memory: &agentv1.MemoryResources{Limit: 64 << 20}}
	return []rpcCase{
		{"update memory", MethodUpdateContainer, memory, updatable, ""},
		{"update cpu and memory", MethodUpdateContainer, &agentv1.UpdateContainerRequest{ContainerId: "w", Memory: &agentv1.MemoryResources{Limit: -1}, Cpu: &agentv1.CPUResources{Quota: 50000}}, updatable, ""},
		{"update pids where only memory and cpu may change", MethodUpdateContainer, &agentv1.UpdateContainerRequest{ContainerId: "w", Pids: &agentv1.PidsResources{Limit: 10}}, updatable, "containers[web].update_resources: pids"},
		{"update memory without update_resources", MethodUpdateContainer, memory, nil, "containers[web].update_resources: memory"},
		{"update unadmitted", MethodUpdateContainer, &agentv1.UpdateContainerRequest{ContainerId: "x", Memory: &agentv1.MemoryResources{Limit: 64 << 20}}, updatable, `container "x" was not admitted`},
		{"version", MethodVersion, &agentv1.VersionRequest{}, nil, ""},
		{"version before policy", MethodVersion, &agentv1.VersionRequest{}, noPolicy, ""},
		{"create before policy", MethodCreateContainer, createWeb("x", nil), noPolicy, "no policy installed"},
		{"list before policy", MethodListContainers, &agentv1.ListContainersRequest{}, noPolicy, "no policy installed"},
		{"set policy before policy", MethodSetPolicy, nil, noPolicy, ""},
		{"report before policy", MethodGetReport, nil, noPolicy, ""},
		{"report", MethodGetReport, nil, reports, ""},
		{"report switched off", MethodGetReport, nil, nil, "agent.get_report"},
		{"version after a binding failure", MethodVersion, &agentv1.VersionRequest{}, poisoned, "refuses all requests"},
		{"report after a binding failure", MethodGetReport, nil, poisoned, "refuses all requests"},
		{"set policy again", MethodSetPolicy, nil, nil, "agent.replace_policy"},
		{"set policy, replaceable", MethodSetPolicy, nil, replaceable, ""},

		{"create web", MethodCreateContainer, createWeb("w2", nil), nil, ""},
		{"create tools", MethodCreateContainer, createTools("t2"), nil, ""},
		{"create other layer", MethodCreateContainer, func() any {
			r := createWeb("b", nil)
			r.GetRootfs().GetBlock().GetVerity().RootHash = strings.Repeat("2", 64)
			return r
		}(), nil, "containers: rootfs: layer root hash 2222"},
		{"create other guest directory", MethodCreateContainer, func() any {
			r := createTools("b")
			r.Rootfs.Source = &agentv1.Rootfs_GuestDirectory{GuestDirectory: "/"}
			return r
		}(), nil, "guest directory / is in no container"},
		{"create without rootfs", MethodCreateContainer, &agentv1.CreateContainerRequest{ContainerId: "b", SpecJson: webSpec(nil)}, nil, "rootfs: missing"},
		{"create without process", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process = nil }), nil, "spec.process: missing"},
		{"create other arg", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process.Args[1] = "-p" + secret }), nil, "containers[web].args: spec.process.args[1]"},
		{"create extra arg", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process.Args = append(s.Process.Args, secret) }), nil, "containers[web].args: spec.process.args: 3 arguments"},
		{"create other env", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "TOKEN="+secret) }), nil, "containers[web].env: spec.process.env[2]"},
		{"create env pattern miss", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process.Env[1] = "GREETING=" + secret + "!" }), nil, "containers[web].env: spec.process.env[1]"},
		{"create other cwd", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process.Cwd = "/" }), nil, "containers[web].cwd"},
		{"create as root", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process.User = specs.User{} }), nil, "containers[web].user"},
		{"create extra group", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process.User.AdditionalGids = []uint32{0} }), nil, "containers[web].user"},
		{"create extra capability", MethodCreateContainer, createWeb("b", func(s *specs.Spec) {
			s.Process.Capabilities.Ambient = []string{"CAP_SYS_ADMIN"}
		}), nil, "containers[web].capabilities.ambient: spec.process.capabilities.ambient: CAP_SYS_ADMIN"},
		{"create moving a bounding capability into effective", MethodCreateContainer, createWeb("b", func(s *specs.Spec) {
			s.Process.Capabilities.Effective = append(s.Process.Capabilities.Effective, "CAP_KILL")
		}), nil, "containers[web].capabilities.effective: spec.process.capabilities.effective: CAP_KILL"},
		{"create dropping a pinned capability", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process.Capabilities.Permitted = nil }), nil, "containers[web].capabilities.permitted"},
		{"create without capabilities under an entry that pins some", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process.Capabilities = nil }), nil, "containers[web].capabilities.bounding"},
		{"create with terminal", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Process.Terminal = true }), nil, "containers[web].tty"},
		{"create with stdin", MethodCreateContainer, func() any {
			r := createWeb("b", nil)
			r.Stdio = &agentv1.StdioOptions{Stdin: true}
			return r
		}(), nil, "containers[web].stdin"},
		{"create with hook", MethodCreateContainer, createWeb("b", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh"}}}
		}), nil, "spec.hooks"},
		{"create with bind mount", MethodCreateContainer, createWeb("b", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/host", Type: "bind", Source: "/", Options: []string{"rbind"}})
		}), nil, `containers[web].mounts: spec.mounts[2]: mount at "/host"`},
		{"create mount without ro option", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Mounts[1].Options = s.Mounts[1].Options[1:] }), nil, "spec.mounts[1]"},
		{"create in guest pid namespace", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[1:] }), nil, "no pid namespace"},
		{"create in guest network", MethodCreateContainer, createWeb("b", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces[:1], s.Linux.Namespaces[2:]...)
		}), nil, "containers[web].guest_network"},
		{"create joining a namespace", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Linux.Namespaces[1].Path = "/proc/1/ns/net" }), nil, "spec.linux.namespaces[1].path"},
		{"create without linux", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Linux = nil }), nil, "spec.linux: missing"},
		{"create with device", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/sda", Type: "b"}} }), nil, "spec.linux.devices"},
		{"create with device access", MethodCreateContainer, createWeb("b", func(s *specs.Spec) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Access: "rwm"})
		}), nil, "spec.linux.resources.devices[1]"},
		{"create other sysctl", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Linux.Sysctl["kernel.domainname"] = secret }), nil, `containers[web].sysctls: spec.linux.sysctl: sysctl "kernel.domainname"`},
		{"create other sysctl value", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Linux.Sysctl["net.ipv4.ping_group_range"] = "0 " + secret }), nil, "containers[web].sysctls"},
		{"create shared propagation", MethodCreateContainer, createWeb("b", func(s *specs.Spec) { s.Linux.RootfsPropagation = "rshared" }), nil, "spec.linux.rootfsPropagation"},
		{"create rebinding an admitted id", MethodCreateContainer, func() any { r := createTools("w"); return r }(), nil, `container "w" was admitted under this entry`},
		{"create again under the same entry", MethodCreateContainer, createWeb("w", nil), nil, `container "w" was admitted under this entry`},

		{"start", MethodStartContainer, &agentv1.StartContainerRequest{ContainerId: "w"}, nil, ""},
		{"start unadmitted", MethodStartContainer, &agentv1.StartContainerRequest{ContainerId: "x"}, nil, `container "x" was not admitted`},

		{"exec ls", MethodExecProcess, execReq("w", "ls2", specs.Process{Args: []string{"/bin/ls", "/srv"}}, false), nil, ""},
		{"exec sh with stdin and tty", MethodExecProcess, execReq("w", "sh2", specs.Process{Args: []string{"/bin/sh"}, Terminal: true}, true), nil, ""},
		{"exec with its own cwd and env", MethodExecProcess, execReq("w", "env", specs.Process{Args: []string{"/bin/env"}, Cwd: "/", Env: []string{"TERM=xterm", "GREETING=hi"}}, false), nil, ""},
		{"exec in the container's cwd where the command has its own", MethodExecProcess, execReq("w", "env", specs.Process{Args: []string{"/bin/env"}}, false), nil, "containers[web].exec.cwd"},
		{"exec with another command's env", MethodExecProcess, execReq("w", "ls3", specs.Process{Args: []string{"/bin/ls", "/srv"}, Env: []string{"TERM=xterm"}}, false), nil, "containers[web].exec.env"},
		{"exec other command", MethodExecProcess, execReq("w", "x", specs.Process{Args: []string{"/bin/cat", "/etc/" + secret}}, false), nil, "containers[web].exec: process_json.args: matches no exec command"},
		{"exec other argument", MethodExecProcess, execReq("w", "x", specs.Process{Args: []string{"/bin/ls", "/etc"}}, false), nil, "matches no exec command"},
		{"exec ls with stdin", MethodExecProcess, execReq("w", "x", specs.Process{Args: []string{"/bin/ls", "/srv"}}, true), nil, "containers[web].exec.stdin"},
		{"exec ls with terminal", MethodExecProcess, execReq("w", "x", specs.Process{Args: []string{"/bin/ls", "/srv"}, Terminal: true}, false), nil, "containers[web].exec.tty"},
		{"exec as root", MethodExecProcess, func() any {
			r := execReq("w", "x", specs.Process{Args: []string{"/bin/ls", "/srv"}}, false)
			r.ProcessJson = []byte(`{"args":["/bin/ls","/srv"],"cwd":"/srv","user":{"uid":0,"gid":0}}`)
			return r
		}(), nil, "containers[web].exec.user"},
		{"exec with capability", MethodExecProcess, execReq("w", "x", specs.Process{Args: []string{"/bin/ls", "/srv"}, Capabilities: &specs.LinuxCapabilities{Effective: []string{"CAP_SYS_ADMIN"}}}, false), nil, "containers[web].exec.capabilities.effective"},
		{"exec with a bounding capability made effective", MethodExecProcess, execReq("w", "x", specs.Process{Args: []string{"/bin/ls", "/srv"}, Capabilities: &specs.LinuxCapabilities{Effective: []string{"CAP_KILL"}}}, false), nil, "containers[web].exec.capabilities.effective"},
		{"exec with a subset of each set", MethodExecProcess, execReq("w", "caps", specs.Process{Args: []string{"/bin/ls", "/srv"}, Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}}}, false), nil, ""},
		{"exec with env", MethodExecProcess, execReq("w", "x", specs.Process{Args: []string{"/bin/ls", "/srv"}, Env: []string{"LD_PRELOAD=/" + secret}}, false), nil, "containers[web].exec.env"},
		{"exec in unadmitted container", MethodExecProcess, execReq("x", "x", specs.Process{Args: []string{"/bin/ls", "/srv"}}, false), nil, `container "x" was not admitted`},
		{"exec id reused for another command", MethodExecProcess, execReq("w", "ls", specs.Process{Args: []string{"/bin/sh"}}, false), nil, "matches no exec command"},

		{"wait init", MethodWaitProcess, &agentv1.WaitProcessRequest{Process: ref("w", "")}, nil, ""},
		{"wait exec", MethodWaitProcess, &agentv1.WaitProcessRequest{Process: ref("w", "ls")}, nil, ""},
		{"wait unadmitted exec", MethodWaitProcess, &agentv1.WaitProcessRequest{Process: ref("w", "x")}, nil, `process "x" was not admitted`},
		{"wait unadmitted container", MethodWaitProcess, &agentv1.WaitProcessRequest{Process: ref("x", "")}, nil, `container "x" was not admitted`},
		{"signal", MethodSignalProcess, &agentv1.SignalProcessRequest{Process: ref("w", ""), Signal: 15}, nil, ""},
		{"signal unadmitted", MethodSignalProcess, &agentv1.SignalProcessRequest{Process: ref("x", ""), Signal: 15}, nil, "was not admitted"},
		{"kill unadmitted", MethodSignalProcess, &agentv1.SignalProcessRequest{Process: ref("x", ""), Signal: 9}, nil, ""},
		{"resize tty of tools", MethodResizeTTY, &agentv1.ResizeTTYRequest{Process: ref("t", ""), Width: 80, Height: 24}, nil, ""},
		{"resize tty of exec sh", MethodResizeTTY, &agentv1.ResizeTTYRequest{Process: ref("w", "sh"), Width: 80, Height: 24}, nil, ""},
		{"resize tty of web", MethodResizeTTY, &agentv1.ResizeTTYRequest{Process: ref("w", ""), Width: 80, Height: 24}, nil, "containers[web].tty"},
		{"write stdin of tools", MethodWriteStdin, &agentv1.WriteStdinRequest{Process: ref("t", ""), Data: []byte("ls\n")}, nil, ""},
		{"write stdin of exec sh", MethodWriteStdin, &agentv1.WriteStdinRequest{Process: ref("w", "sh"), Data: []byte("ls\n")}, nil, ""},
		{"write stdin of web", MethodWriteStdin, &agentv1.WriteStdinRequest{Process: ref("w", ""), Data: []byte(secret)}, nil, "containers[web].stdin"},
		{"write stdin of exec ls", MethodWriteStdin, &agentv1.WriteStdinRequest{Process: ref("w", "ls"), Data: []byte(secret)}, nil, "containers[web].exec.stdin"},
		{"close stdin of tools", MethodCloseStdin, &agentv1.CloseStdinRequest{Process: ref("t", "")}, nil, ""},
		{"close stdin of web", MethodCloseStdin, &agentv1.CloseStdinRequest{Process: ref("w", "")}, nil, "containers[web].stdin"},
		{"read stdout of web", MethodReadOutput, &agentv1.ReadOutputRequest{Process: ref("w", ""), Credit: 4}, nil, ""},
		{"read stdout of exec ls", MethodReadOutput, &agentv1.ReadOutputRequest{Process: ref("w", "ls"), Credit: 4}, nil, ""},
		{"read more credit", MethodReadOutput, &agentv1.ReadOutputRequest{Credit: 4}, nil, ""},
		{"read stderr of web", MethodReadOutput, &agentv1.ReadOutputRequest{Process: ref("w", ""), Stream: agentv1.OutputStream_OUTPUT_STREAM_STDERR, Credit: 4}, nil, "containers[web].stderr"},
		{"read stderr of tools", MethodReadOutput, &agentv1.ReadOutputRequest{Process: ref("t", ""), Stream: agentv1.OutputStream_OUTPUT_STREAM_STDERR, Credit: 4}, nil, ""},
		{"read stdout of unadmitted", MethodReadOutput, &agentv1.ReadOutputRequest{Process: ref("x", ""), Credit: 4}, nil, "was not admitted"},
		{"delete", MethodDeleteContainer, &agentv1.DeleteContainerRequest{ContainerId: "w"}, nil, ""},
		{"delete unadmitted", MethodDeleteContainer, &agentv1.DeleteContainerRequest{ContainerId: "x"}, nil, ""},
		{"delete before policy", MethodDeleteContainer, &agentv1.DeleteContainerRequest{ContainerId: "w"}, noPolicy, "no policy installed"},
		{"list", MethodListContainers, &agentv1.ListContainersRequest{}, nil, ""},
		{"state", MethodState, &agentv1.StateRequest{ContainerId: "t"}, nil, ""},
		{"state unadmitted", MethodState, &agentv1.StateRequest{ContainerId: "x"}, nil, "was not admitted"},
		{"stats", MethodStats, &agentv1.StatsRequest{ContainerId: "w"}, nil, ""},
		{"stats unadmitted", MethodStats, &agentv1.StatsRequest{ContainerId: "x"}, nil, "was not admitted"},
		{"stats switched off", MethodStats, &agentv1.StatsRequest{ContainerId: "w"}, noStats, "agent.stats"},
		{"stats of the agent", MethodStats, &agentv1.StatsRequest{}, nil, ""},
		{"stats of the agent switched off", MethodStats, &agentv1.StatsRequest{}, noStats, "agent.stats"},
		{"stats of a hostile id", MethodStats, &agentv1.StatsRequest{ContainerId: "../w"}, nil, "was not admitted"},
		{"update a listed files volume", MethodUpdateVolume, update("w", "/etc/config"), volumes, ""},
		{"update an unlisted volume", MethodUpdateVolume, update("w", "/etc/other"), volumes, `containers[web].volumes: destination: mount destination "/etc/other"`},
		{"update an emptyDir", MethodUpdateVolume, update("w", "/cache"), volumes, `mount destination "/cache" may not take host-provided files`},
		{"update a volume of an unadmitted container", MethodUpdateVolume, update("x", "/etc/config"), volumes, "was not admitted"},
		{"read back a listed file", MethodReadVolume, &agentv1.ReadVolumeRequest{ContainerId: "w", Destination: "/dev/termination-log"}, volumes, ""},
		{"read back a file without read_back", MethodReadVolume, &agentv1.ReadVolumeRequest{ContainerId: "w", Destination: "/etc/config"}, volumes, `containers[web].volumes: destination: the policy does not let the host read back the file at "/etc/config"`},
		{"read back of an unadmitted container", MethodReadVolume, &agentv1.ReadVolumeRequest{ContainerId: "x", Destination: "/dev/termination-log"}, volumes, "was not admitted"},
		{"configure the pod network", MethodConfigureNetwork, network, podNetwork, ""},
		{"configure the pod network switched off", MethodConfigureNetwork, network, nil, "agent.pod_network"},
		{"configure the pod network before policy", MethodConfigureNetwork, network, noPolicy, "no policy installed"},
		{"shutdown", MethodShutdown, &agentv1.ShutdownRequest{}, replaceable, ""},
		{"shutdown switched off", MethodShutdown, &agentv1.ShutdownRequest{}, nil, "agent.shutdown"},
		{"unknown method", prefix + "Debug", &agentv1.VersionRequest{}, nil, "default"},
		{"request of another method", MethodStartContainer, &agentv1.DeleteContainerRequest{ContainerId: "w"}, nil, "default"},
	}
}

// TestEveryRPCAllowAndDeny runs the table above, and checks that it has
// an allowed and a denied case for every method of the agent service
// (taken from the generated descriptor) and for the calls the policy
// adds.
func TestEveryRPCAllowAndDeny(t *testing.T) {
	allowed, denied := map[string]bool{}, map[string]bool{}
	for _, tc := range rpcCases() {
		t.Run(tc.name, func(t *testing.T) {
			mk := tc.gate
			if mk == nil {
				mk = func(t *testing.T) *Gate { return admitted(t) }
			}
			g := mk(t)
			err := authorize(context.Background(), g, tc.method, tc.req)
			if tc.wantRule == "" {
				if err != nil {
					t.Fatalf("Authorize(%s, %s) = %v, want allowed", tc.method, tc.name, err)
				}
				allowed[tc.method] = true
				return
			}
			if err == nil || !errors.Is(err, authz.ErrDenied) || !strings.Contains(err.Error(), tc.wantRule) {
				t.Fatalf("Authorize(%s, %s) = %v, want a denial naming %q", tc.method, tc.name, err, tc.wantRule)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Authorize(%s, %s) = %v: the denial echoes a request value", tc.method, tc.name, err)
			}
			denied[tc.method] = true
		})
	}
	methods := []string{MethodSetPolicy, MethodGetReport}
	for _, m := range agentv1.AgentMethods {
		methods = append(methods, prefix+m.Name)
	}
	for _, m := range methods {
		if !allowed[m] || !denied[m] {
			t.Errorf("method %s: table has allowed=%v denied=%v cases, want both", m, allowed[m], denied[m])
		}
	}
}

func TestForget(t *testing.T) {
	g := admitted(t)
	ctx := context.Background()
	if err := authorize(ctx, g, MethodCreateContainer, createTools("w")); err == nil {
		t.Fatal("Authorize(create tools as w) = nil, want a denial while w is admitted under web")
	}
	g.Forget("w")
	if err := authorize(ctx, g, MethodWaitProcess, &agentv1.WaitProcessRequest{Process: ref("w", "ls")}); err == nil {
		t.Error("Authorize(wait w/ls) after Forget(w) = nil, want a denial")
	}
	if err := authorize(ctx, g, MethodCreateContainer, createTools("w")); err != nil {
		t.Errorf("Authorize(create tools as w) after Forget(w) = %v, want allowed", err)
	}
}

// scriptedStream is a ttrpcserver.StreamServer whose client sends msgs.
type scriptedStream struct{ msgs []*agentv1.ReadOutputRequest }

func (s *scriptedStream) SendMsg(ttrpcserver.Message) error { return nil }

func (s *scriptedStream) RecvMsg(m ttrpcserver.Message) error {
	b, err := s.msgs[0].Marshal()
	if err != nil {
		return err
	}
	s.msgs = s.msgs[1:]
	return m.Unmarshal(b)
}

// TestReadOutputStream runs ReadOutput streams through the agent's
// stream wrapper: the first message is checked; later ones only carry
// credit for the admitted stream and pass.
func TestReadOutputStream(t *testing.T) {
	g := admitted(t)
	tests := []struct {
		name    string
		msgs    []*agentv1.ReadOutputRequest
		wantErr []bool
	}{
		{"admitted stdout, then credit", []*agentv1.ReadOutputRequest{
			{Process: ref("w", ""), Credit: 4}, {Credit: 1}, {Process: ref("x", ""), Stream: agentv1.OutputStream_OUTPUT_STREAM_STDERR, Credit: 1},
		}, []bool{false, false, false}},
		{"refused stderr first", []*agentv1.ReadOutputRequest{
			{Process: ref("w", ""), Stream: agentv1.OutputStream_OUTPUT_STREAM_STDERR, Credit: 4},
		}, []bool{true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ss := authz.Stream(context.Background(), g, MethodReadOutput, &scriptedStream{msgs: tc.msgs})
			for i, want := range tc.wantErr {
				err := ss.RecvMsg(new(agentv1.ReadOutputRequest))
				if (err != nil) != want {
					t.Errorf("message %d: RecvMsg = %v, want error %v", i, err, want)
				}
			}
		})
	}
}

// TestUndecodedRequestRefused checks that a CreateContainer or
// ExecProcess message that did not pass the edge's decode step is
// refused: the policy checks only decoded specs.
func TestUndecodedRequestRefused(t *testing.T) {
	g := admitted(t)
	for _, tc := range []struct {
		method string
		req    any
	}{
		{MethodCreateContainer, createWeb("u", nil)},
		{MethodExecProcess, execReq("w", "u", specs.Process{Args: []string{"/bin/ls", "/srv"}}, false)},
	} {
		if err := g.Authorize(context.Background(), tc.method, tc.req); !errors.Is(err, authz.ErrDenied) || !strings.Contains(err.Error(), "default") {
			t.Errorf("Authorize(%s, undecoded %T) = %v, want a denial by rule default", tc.method, tc.req, err)
		}
	}
}
