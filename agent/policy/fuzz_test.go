package policy

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	doc "confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1/wire"
)

// FuzzEvaluate feeds arbitrary specs, processes and IDs to the evaluator
// under testdata/web.json: it must never panic, and whatever it admits
// must really satisfy the entry's rules.
func FuzzEvaluate(f *testing.F) {
	f.Add(uint8(0), "w", "", webSpec(nil), false)
	f.Add(uint8(1), "t", "", toolsSpec(nil), true)
	f.Add(uint8(2), "w", "e", []byte(`{"args":["/bin/ls","/srv/a"],"cwd":"/srv","user":{"uid":1000,"gid":1000}}`), false)
	f.Add(uint8(3), "w", "sh", []byte(`{}`), true)
	f.Add(uint8(4), "w", "", []byte(`{"process":{"args":["/bin/httpd","-p1"]},"hooks":{"prestart":[{"path":"/x"}]}}`), false)
	// The fields the spec allowlist pins or refuses, each on an otherwise admitted spec.
	for _, mod := range []func(*specs.Spec){
		func(s *specs.Spec) { s.Process.Capabilities = nil },
		func(s *specs.Spec) { s.Process.Capabilities.Ambient = []string{"CAP_KILL"} },
		func(s *specs.Spec) { s.Process.NoNewPrivileges = false },
		func(s *specs.Spec) { s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow} },
		func(s *specs.Spec) { s.Linux.MaskedPaths = nil },
		func(s *specs.Spec) { s.Linux.ReadonlyPaths = s.Linux.ReadonlyPaths[1:] },
		func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: 0, ContainerID: 0, Size: 1}}
		},
		func(s *specs.Spec) { s.Mounts[0].UIDMappings = []specs.LinuxIDMapping{{Size: 1}} },
		func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1, Soft: 1}}
		},
		func(s *specs.Spec) { s.Process.OOMScoreAdj = ptr(-999) },
		func(s *specs.Spec) { s.Process.User.Umask = ptr(uint32(0)) },
		func(s *specs.Spec) { s.Hostname = "x" },
		func(s *specs.Spec) { s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux32} },
		func(s *specs.Spec) { s.Linux.Resources.Unified = map[string]string{"cgroup.procs": "1"} },
		func(s *specs.Spec) { s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: ptr(int64(1 << 20))} },
		func(s *specs.Spec) { s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"boottime": {Secs: 1}} },
		func(s *specs.Spec) { s.Annotations = map[string]string{"a": "b"} },
	} {
		f.Add(uint8(0), "n", "", webSpec(mod), false)
	}
	f.Add(uint8(2), "w", "ls2", []byte(`{"args":["/bin/ls","/srv"],"cwd":"/srv","user":{"uid":1000,"gid":1000},"noNewPrivileges":true}`), false)
	f.Add(uint8(2), "w", "ls3", []byte(`{"args":["/bin/ls","/srv"],"cwd":"/srv","user":{"uid":1000,"gid":1000}}`), false)
	f.Add(uint8(2), "w", "ls4", []byte(`{"args":["/bin/ls","/srv"],"cwd":"/srv","user":{"uid":1000,"gid":1000},"noNewPrivileges":true,"capabilities":{"effective":["CAP_KILL"]}}`), false)
	f.Add(uint8(2), "w", "ls5", []byte(`{"args":["/bin/ls","/srv"],"cwd":"/srv","user":{"uid":1000,"gid":1000},"noNewPrivileges":true,"rlimits":[{"type":"RLIMIT_CORE","hard":1,"soft":1}],"scheduler":{"policy":"SCHED_FIFO"}}`), false)
	webDoc := readTestdata(f, "web.json")
	f.Fuzz(func(t *testing.T, op uint8, cid, eid string, body []byte, stdin bool) {
		p, err := Parse(webDoc)
		if err != nil {
			t.Fatal(err)
		}
		e := NewEvaluator(p)
		ctx := context.Background()
		// Admit one container of each entry so the per-process rules are reached.
		if err := authorize(ctx, e, MethodCreateContainer, createTools("t")); err != nil {
			t.Fatal(err)
		}
		if err := authorize(ctx, e, MethodCreateContainer, createWeb("w", nil)); err != nil {
			t.Fatal(err)
		}
		stdio := &agentv1.StdioOptions{Stdin: stdin}
		switch op % 6 {
		case 0, 1:
			r := &agentv1.CreateContainerRequest{ContainerId: cid, SpecJson: body, Stdio: stdio,
				Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{Verity: &agentv1.Verity{RootHash: webLayer, DataBlocks: 1, HashOffset: 4096}}}}}
			if op%6 == 1 {
				r.Rootfs.Source = &agentv1.Rootfs_GuestDirectory{GuestDirectory: "/usr/share/confguest/busybox"}
			}
			if authorize(ctx, e, MethodCreateContainer, r) != nil {
				return
			}
			var s specs.Spec
			if err := json.Unmarshal(body, &s); err != nil {
				t.Fatalf("admitted a spec that does not parse: %q", body)
			}
			c := &p.Containers[0]
			if op%6 == 1 {
				c = &p.Containers[1]
			}
			if s.Process == nil || len(s.Process.Args) != len(c.Args) || !argsMatch(c.Args, s.Process.Args) {
				t.Fatalf("admitted args outside containers[%s]: %q", c.Name, body)
			}
			if (s.Process.Terminal && !c.TTY) || (stdin && !c.Stdin) || s.Linux == nil || len(s.Linux.Devices) > 0 {
				t.Fatalf("admitted a spec breaking containers[%s]: %q", c.Name, body)
			}
			for _, m := range s.Mounts {
				if !mountAllowed(c.Mounts, m) {
					t.Fatalf("admitted mount %+v outside containers[%s]", m, c.Name)
				}
			}
			checkAdmittedSpec(t, c, &s, body)
		case 2:
			r := &agentv1.ExecProcessRequest{ContainerId: cid, ExecId: eid, ProcessJson: body, Stdio: stdio}
			if authorize(ctx, e, MethodExecProcess, r) != nil {
				return
			}
			var pr specs.Process
			if err := json.Unmarshal(body, &pr); err != nil || cid != "w" {
				t.Fatalf("admitted exec %q in %q", body, cid)
			}
			checkAdmittedExec(t, &p.Containers[0], &pr, body)
		case 3:
			r := &agentv1.WriteStdinRequest{Process: &agentv1.ProcessRef{ContainerId: cid, ExecId: eid}, Data: body}
			if authorize(ctx, e, MethodWriteStdin, r) == nil && (cid != "t" || eid != "") {
				t.Fatalf("admitted stdin to %q/%q", cid, eid)
			}
		case 4:
			r := &agentv1.ReadOutputRequest{Process: &agentv1.ProcessRef{ContainerId: cid, ExecId: eid}, Stream: agentv1.OutputStream(len(body) % 3)}
			web := cid == "w" && eid == "" && r.Stream != agentv1.OutputStream_OUTPUT_STREAM_STDERR
			if authorize(ctx, e, MethodReadOutput, r) == nil && !slices.Contains([]string{"", "t"}, cid) && !web {
				t.Fatalf("admitted reading %q/%q", cid, eid)
			}
		case 5:
			r := &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: cid, ExecId: eid}, Signal: 15} // SIGKILL is allowed on any ID (it only removes)
			if authorize(ctx, e, MethodSignalProcess, r) == nil && (cid != "t" && cid != "w" || eid != "") {
				t.Fatalf("admitted a signal to %q/%q", cid, eid)
			}
		}
	})
}

// checkAdmittedSpec fails when an admitted spec breaks what entry c pins
// or what the agent refuses.
func checkAdmittedSpec(t *testing.T, c *Container, s *specs.Spec, body []byte) {
	t.Helper()
	if field, _ := refusedField(reflect.ValueOf(s), "", "spec"); field != "" {
		t.Fatalf("admitted a spec setting refused field %s: %q", field, body)
	}
	want := c.Capabilities.Sets()
	for i, set := range requestCaps(s.Process).Sets() {
		if !sameSet(set.Caps, want[i].Caps) {
			t.Fatalf("admitted %s capabilities %q, containers[%s] pins %q: %q", set.Name, set.Caps, c.Name, want[i].Caps, body)
		}
	}
	if s.Process.NoNewPrivileges != c.NoNewPrivileges || !sameSet(specRlimits(c.Rlimits), s.Process.Rlimits) ||
		!sameValue(c.User.Umask, s.Process.User.Umask) || !oomScoreAllowed(c.OOMScoreAdj, s.Process.OOMScoreAdj) {
		t.Fatalf("admitted process fields outside containers[%s]: %q", c.Name, body)
	}
	l := s.Linux
	if (l.Seccomp == nil) != (c.Seccomp == "") || l.Seccomp != nil && doc.SeccompHash(l.Seccomp) != c.Seccomp {
		t.Fatalf("admitted a seccomp profile containers[%s] does not pin: %q", c.Name, body)
	}
	if len(c.UIDMappings) == 0 && (len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0 ||
		slices.ContainsFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace })) {
		t.Fatalf("admitted a user namespace containers[%s] gives no mappings for: %q", c.Name, body)
	}
	for _, p := range c.RequiredMaskedPaths() {
		if !slices.Contains(l.MaskedPaths, p) {
			t.Fatalf("admitted a spec not masking %s: %q", p, body)
		}
	}
	for _, p := range c.RequiredReadonlyPaths() {
		if !slices.Contains(l.ReadonlyPaths, p) {
			t.Fatalf("admitted a spec not making %s read-only: %q", p, body)
		}
	}
	if !c.Hostname.Matches(s.Hostname) {
		t.Fatalf("admitted hostname outside containers[%s]: %q", c.Name, body)
	}
}

// checkAdmittedExec fails when a process exec'd under entry c could hold
// more than the entry gives.
func checkAdmittedExec(t *testing.T, c *Container, p *specs.Process, body []byte) {
	t.Helper()
	if field, _ := refusedField(reflect.ValueOf(p), "process", "process_json"); field != "" {
		t.Fatalf("admitted an exec setting refused field %s: %q", field, body)
	}
	want := c.Capabilities.Sets()
	for i, set := range requestCaps(p).Sets() {
		for _, name := range set.Caps {
			if !slices.Contains(want[i].Caps, name) {
				t.Fatalf("admitted exec with %s in %s, outside containers[%s]: %q", name, set.Name, c.Name, body)
			}
		}
	}
	if c.NoNewPrivileges && !p.NoNewPrivileges {
		t.Fatalf("admitted exec turning no_new_privileges off: %q", body)
	}
	if len(p.Rlimits) > 0 && !sameSet(specRlimits(c.Rlimits), p.Rlimits) {
		t.Fatalf("admitted exec with its own rlimits: %q", body)
	}
	if p.User.UID != c.User.UID || p.User.GID != c.User.GID {
		t.Fatalf("admitted exec as another user: %q", body)
	}
}
