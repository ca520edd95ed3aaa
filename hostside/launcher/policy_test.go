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
		doc      []byte
		snp      bool
		reply    *agentv1.SetPolicyResponse
		replyErr error
		wantErr  string // "" = installed
	}{
		{name: "installed unbound (tee=none)", doc: doc},
		{name: "bound under SEV-SNP", doc: doc, snp: true, reply: &agentv1.SetPolicyResponse{Sha256: HostDataFor(doc), Bound: true}},
		{name: "no policy", wantErr: "no policy for the guest"},
		{name: "agent hashed other bytes", doc: doc, reply: &agentv1.SetPolicyResponse{Sha256: HostDataFor([]byte("{}"))}, wantErr: "the agent hashed it as"},
		{name: "unbound under SEV-SNP", doc: doc, snp: true, reply: &agentv1.SetPolicyResponse{Sha256: HostDataFor(doc)}, wantErr: "installed it unbound"},
		{name: "agent without a policy gate", doc: doc, replyErr: status.Error(codes.FailedPrecondition, "set policy: agent runs without a policy gate"), wantErr: "rebuild the image with make image"},
		{name: "agent refuses", doc: doc, replyErr: status.Error(codes.PermissionDenied, "policy not bound to HOST_DATA"), wantErr: "SetPolicy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newFakeAgent()
			a.policyReply, a.policyErr = tc.reply, tc.replyErr
			s := serveFakeAgent(t, a)
			s.opts.Policy, s.opts.SEVSNP = tc.doc, tc.snp
			err := s.InstallPolicy(context.Background())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("InstallPolicy() = %v, want nil", err)
				}
				if string(a.policy) != string(tc.doc) {
					t.Errorf("the agent got policy %q, want exactly %q", a.policy, tc.doc)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("InstallPolicy() = %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
	t.Run("no policy is ErrNoPolicy", func(t *testing.T) {
		s := serveFakeAgent(t, newFakeAgent())
		if err := s.InstallPolicy(context.Background()); !errors.Is(err, ErrNoPolicy) {
			t.Errorf("InstallPolicy() without a policy = %v, want ErrNoPolicy", err)
		}
	})
}

func TestUsePolicy(t *testing.T) {
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
		{name: "SEV-SNP: HOST_DATA follows", s: &Sandbox{opts: Options{SEVSNP: true, HostData: HostDataFor(nil)}, SNP: &SNPLaunch{HostData: HostDataFor(nil)}}, doc: doc, wantHostData: HostDataFor(doc)},
		{name: "SEV-SNP: --host-data of this policy", s: &Sandbox{opts: Options{SEVSNP: true, HostData: strings.ToUpper(HostDataFor(doc))}, hostDataGiven: true}, doc: doc, wantHostData: HostDataFor(doc)},
		{name: "SEV-SNP: other --host-data", s: &Sandbox{opts: Options{SEVSNP: true, HostData: other}, hostDataGiven: true}, doc: doc, wantErr: "differs from the policy's SHA-256"},
		{name: "invalid policy", s: &Sandbox{}, doc: []byte(`{"version": 1, "allow_all": true}`), wantErr: `unknown field "allow_all"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.UsePolicy(tc.doc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("UsePolicy() = %v, want an error naming %q", err, tc.wantErr)
				}
				if tc.s.Policy() != nil {
					t.Errorf("Policy() = %q after a refused UsePolicy, want nil", tc.s.Policy())
				}
				return
			}
			if err != nil {
				t.Fatalf("UsePolicy() = %v", err)
			}
			if string(tc.s.Policy()) != string(tc.doc) {
				t.Errorf("Policy() = %q, want %q", tc.s.Policy(), tc.doc)
			}
			if tc.wantHostData != "" && tc.s.opts.HostData != tc.wantHostData {
				t.Errorf("HOST_DATA = %s, want %s", tc.s.opts.HostData, tc.wantHostData)
			}
			if tc.s.SNP != nil && tc.s.SNP.HostData != tc.wantHostData {
				t.Errorf("SNP.HostData = %s, want %s", tc.s.SNP.HostData, tc.wantHostData)
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
		{"capabilities of the spec", len(got.Capabilities) == len(defaultCaps)},
		{"mounts of the spec", len(got.Mounts) == len(ContainerSpec(p, "ctr").Mounts)},
		{"exec cwd defaults to /", len(got.Exec) == 1 && got.Exec[0].Cwd == "/"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("PolicyEntry: %s: got %+v", c.name, got)
		}
	}
}
