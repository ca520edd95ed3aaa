package policy

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1"
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
	doc := readTestdata(f, "web.json")
	f.Fuzz(func(t *testing.T, op uint8, cid, eid string, body []byte, stdin bool) {
		p, err := Parse(doc)
		if err != nil {
			t.Fatal(err)
		}
		e := NewEvaluator(p)
		ctx := context.Background()
		// Admit one known container so the per-process rules are reached.
		if err := authorize(ctx, e, MethodCreateContainer, createTools("t")); err != nil {
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
		case 2:
			r := &agentv1.ExecProcessRequest{ContainerId: cid, ExecId: eid, ProcessJson: body, Stdio: stdio}
			if authorize(ctx, e, MethodExecProcess, r) != nil {
				return
			}
			var pr specs.Process
			if err := json.Unmarshal(body, &pr); err != nil || cid != "t" {
				t.Fatalf("admitted exec %q in %q", body, cid)
			}
			t.Fatalf("admitted exec %q in tools, which has no exec rule", body)
		case 3:
			r := &agentv1.WriteStdinRequest{Process: &agentv1.ProcessRef{ContainerId: cid, ExecId: eid}, Data: body}
			if authorize(ctx, e, MethodWriteStdin, r) == nil && (cid != "t" || eid != "") {
				t.Fatalf("admitted stdin to %q/%q", cid, eid)
			}
		case 4:
			r := &agentv1.ReadOutputRequest{Process: &agentv1.ProcessRef{ContainerId: cid, ExecId: eid}, Stream: agentv1.OutputStream(len(body) % 3)}
			if authorize(ctx, e, MethodReadOutput, r) == nil && !slices.Contains([]string{"", "t"}, cid) {
				t.Fatalf("admitted reading %q/%q", cid, eid)
			}
		case 5:
			r := &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: cid, ExecId: eid}, Signal: 9}
			if authorize(ctx, e, MethodSignalProcess, r) == nil && (cid != "t" || eid != "") {
				t.Fatalf("admitted a signal to %q/%q", cid, eid)
			}
		}
	})
}
