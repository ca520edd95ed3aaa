package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
)

const testPolicy = `{"version": 1, "agent": {"shutdown": true}}` + "\n"

func TestInstallPolicy(t *testing.T) {
	doc := []byte(testPolicy)
	tests := []struct {
		name     string
		first    bool
		snp      bool
		reply    *agentv1.SetPolicyResponse
		replyErr error
		wantErr  string // "" = installed
	}{
		{name: "installed unbound (tee=none)", first: true},
		{name: "bound under SEV-SNP", first: true, snp: true, reply: &agentv1.SetPolicyResponse{Sha256: HostDataFor(doc), Bound: true}},
		{name: "replacement under SEV-SNP", snp: true, reply: &agentv1.SetPolicyResponse{Sha256: HostDataFor(doc)}},
		{name: "agent hashed other bytes", first: true, reply: &agentv1.SetPolicyResponse{Sha256: HostDataFor([]byte("{}"))}, wantErr: "the agent hashed it as"},
		{name: "replacement hashed as other bytes", reply: &agentv1.SetPolicyResponse{Sha256: HostDataFor([]byte("{}"))}, wantErr: "the agent hashed it as"},
		{name: "unbound under SEV-SNP", first: true, snp: true, reply: &agentv1.SetPolicyResponse{Sha256: HostDataFor(doc)}, wantErr: "installed it unbound"},
		{name: "agent without a policy gate", first: true, replyErr: status.Error(codes.FailedPrecondition, "set policy: agent runs without a policy gate"), wantErr: "rebuild the image with make image"},
		{name: "agent refuses", first: true, replyErr: status.Error(codes.PermissionDenied, "policy not bound to HOST_DATA"), wantErr: "SetPolicy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newFakeAgent()
			a.policyReply, a.policyErr = tc.reply, tc.replyErr
			g := serveFakeAgent(t, a)
			g.s.opts.SEVSNP = tc.snp
			g.installed = !tc.first
			err := g.SetPolicy(context.Background(), doc)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("SetPolicy(), first %v = %v, want nil", tc.first, err)
				}
				if string(a.policy) != string(doc) {
					t.Errorf("the agent got policy %q, want exactly %q", a.policy, doc)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("SetPolicy(), first %v = %v, want an error naming %q", tc.first, err, tc.wantErr)
			}
		})
	}
	t.Run("no policy gate is ErrNoPolicyGate", func(t *testing.T) {
		a := newFakeAgent()
		a.policyErr = status.Error(codes.Unimplemented, "unknown method SetPolicy")
		g := serveFakeAgent(t, a)
		if err := g.SetPolicy(context.Background(), doc); !errors.Is(err, ErrNoPolicyGate) {
			t.Errorf("SetPolicy() on an agent without SetPolicy = %v, want ErrNoPolicyGate", err)
		}
	})
}

func TestSettlePolicy(t *testing.T) {
	doc := []byte(testPolicy)
	other := strings.Repeat("ab", 32)
	tests := []struct {
		name         string
		s            *Sandbox
		doc          []byte
		wantHostData string
		wantErr      string
	}{
		{name: "no SEV-SNP", s: &Sandbox{}, doc: doc},
		{name: "SEV-SNP: HOST_DATA follows", s: &Sandbox{opts: Options{SEVSNP: true, HostData: HostDataFor(nil)}, snp: &SNPLaunch{HostData: HostDataFor(nil)}}, doc: doc, wantHostData: HostDataFor(doc)},
		{name: "SEV-SNP: no policy keeps the empty policy's", s: &Sandbox{opts: Options{SEVSNP: true, HostData: HostDataFor(nil)}, snp: &SNPLaunch{HostData: HostDataFor(nil)}}, wantHostData: HostDataFor(nil)},
		{name: "SEV-SNP: --host-data of this policy", s: &Sandbox{opts: Options{SEVSNP: true, HostData: strings.ToUpper(HostDataFor(doc))}, hostDataGiven: true}, doc: doc, wantHostData: HostDataFor(doc)},
		{name: "SEV-SNP: other --host-data", s: &Sandbox{opts: Options{SEVSNP: true, HostData: other}, hostDataGiven: true}, doc: doc, wantErr: "differs from the policy's SHA-256"},
		{name: "invalid policy", s: &Sandbox{}, doc: []byte(`{"version": 1, "allow_all": true}`), wantErr: `unknown field "allow_all"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.settlePolicy(tc.doc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("settlePolicy() = %v, want an error naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("settlePolicy() = %v", err)
			}
			if tc.wantHostData != "" && tc.s.opts.HostData != tc.wantHostData {
				t.Errorf("HOST_DATA = %s, want %s", tc.s.opts.HostData, tc.wantHostData)
			}
			if tc.s.snp != nil && tc.s.snp.HostData != tc.wantHostData {
				t.Errorf("SNP.HostData = %s, want %s", tc.s.snp.HostData, tc.wantHostData)
			}
		})
	}
}

func TestPolicyEntry(t *testing.T) {
	p := Process{Args: []string{"/bin/sh", "-c", "echo hi"}, Env: []string{"PATH=/bin", "A=b"}, Cwd: "/srv", TTY: true}
	layer := strings.Repeat("AB", 32)
	c := PolicyEntry("main", layer, ContainerSpec(p, "ctr"))
	c.Exec = []policy.Exec{ExecRule(Process{Args: []string{"ls"}, Env: []string{"PATH=/bin"}})}
	doc, err := json.Marshal(policy.Policy{Version: policy.Version, Containers: []policy.Container{c}})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := policy.Parse(doc)
	if err != nil {
		t.Fatalf("Parse(PolicyEntry document) = %v\n%s", err, doc)
	}
	got := parsed.Containers[0]
	checks := []struct {
		name string
		ok   bool
	}{
		{"layer in lower case", len(got.Rootfs.Layers) == 1 && got.Rootfs.Layers[0] == strings.ToLower(layer)},
		{"args exact", len(got.Args) == 3 && got.Args[2].Matches("echo hi") && !got.Args[2].Matches("echo ho")},
		{"env", len(got.Env) == 2 && got.Env[1].Matches("A=b")},
		{"cwd", got.WorkingDir() == "/srv"},
		{"tty from the spec", got.TTY},
		{"output readable, no stdin", got.Stdout && got.Stderr && !got.Stdin},
		{"capabilities of the spec, set by set", len(got.Capabilities.Bounding) == len(defaultCaps) && len(got.Capabilities.Effective) == len(defaultCaps) &&
			len(got.Capabilities.Permitted) == len(defaultCaps) && len(got.Capabilities.Inheritable) == 0 && len(got.Capabilities.Ambient) == 0},
		{"mounts of the spec", len(got.Mounts) == len(ContainerSpec(p, "ctr").Mounts)},
		{"exec cwd defaults to /", len(got.Exec) == 1 && got.Exec[0].Cwd == "/"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("PolicyEntry: %s: got %+v", c.name, got)
		}
	}
}
